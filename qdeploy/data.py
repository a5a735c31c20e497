"""Loading and checking user data (``--data``/``--calib``): .npy, or .npz with an array named ``x`` (else the only one)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qdeploy.errors import InputDataError


def load_array(path: str | Path) -> np.ndarray:
    """Load a float32 array from ``.npy`` or ``.npz`` (array ``x``, else the only array)."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"data file {path} does not exist; pass an existing .npy or .npz file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.keys())
                if "x" in names:
                    array = archive["x"]
                elif len(names) == 1:
                    array = archive[names[0]]
                else:
                    raise InputDataError(
                        f"data file {path} holds arrays {names} but none named 'x'; name the input array 'x'"
                    )
        else:
            raise InputDataError(f"data file {path} is not .npy or .npz; save the inputs with numpy.save/savez")
    except InputDataError:
        raise
    except Exception as exc:  # numpy raises several types for corrupt files
        raise InputDataError(f"data file {path} could not be read as numpy data ({type(exc).__name__}: {exc})") from exc
    if not np.issubdtype(array.dtype, np.number):
        raise InputDataError(f"data file {path} holds {array.dtype} values; numeric inputs are required")
    return np.ascontiguousarray(array, dtype=np.float32)


def check_array(x: np.ndarray, expected_shape: Sequence[int] | None, what: str) -> np.ndarray:
    """Check ``x`` (batch first) against the model's per-sample shape and reject NaN/Inf; returns float32."""
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if x.ndim == 0 or x.shape[0] == 0:
        raise InputDataError(f"{what} is empty; give at least one sample (batch dimension first)")
    if expected_shape is not None:
        expected = tuple(int(d) for d in expected_shape)
        if tuple(x.shape[1:]) != expected:
            raise InputDataError(
                f"{what} has per-sample shape {tuple(x.shape[1:])} but the model expects {expected} "
                f"(batch dimension first, e.g. {(x.shape[0], *expected)})"
            )
    bad = ~np.isfinite(x)
    if bad.any():
        first = int(np.argwhere(bad.reshape(len(x), -1).any(axis=1))[0, 0])
        raise InputDataError(f"{what} contains NaN or Inf (first in sample {first}); clean the data before use")
    return x


def load_xy(path: str | Path, what: str, targets: str) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x`` (checked inputs) and ``y`` from an .npz; ``what`` and ``targets`` word the errors ("training
    data", "labels")."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.exists():
        raise InputDataError(f"{what} {path} must be an existing .npz with arrays 'x' (inputs) and 'y' ({targets})")
    with np.load(path, allow_pickle=False) as archive:
        if "x" not in archive or "y" not in archive:
            raise InputDataError(f"{what} {path} holds {list(archive.keys())}; it needs arrays 'x' and 'y'")
        x, y = archive["x"], archive["y"]
    if len(x) != len(y):
        raise InputDataError(f"{what} {path}: {len(x)} inputs but {len(y)} {targets}")
    return check_array(x, None, f"{what} {path}"), y


def load_labelled(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and integer labels from an .npz holding arrays ``x`` and ``y`` (training data for QAT)."""
    x, y = load_xy(path, "training data", "labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputDataError(f"training data {path}: labels 'y' must be integers (class indices), got {y.dtype}")
    return x, y.astype(np.int64)
