"""``--eval DATA.npz``: how much a quantized model lost against its float original, on the user's own data.

Classifiers (integer labels, two or more outputs per sample) are scored by top-1 accuracy, anything else by the mean
squared error against ``y``. The quantized side is the exported QONNX graph run by the golden executor — what every
target is verified against, so what the deployed model computes. A warning names a collapse (every sample
predicted as one class while the float model predicts several) and a loss beyond the stated margin.

The result travels with the model: it is stored in the QONNX file's metadata (``EVAL_METADATA_KEY``), so a compile
of that file shows it in ``report.html`` without another look at the data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qdeploy.errors import InputDataError

#: key of the evaluation record in a QONNX file's metadata_props
EVAL_METADATA_KEY = "qdeploy.eval"
#: warn when the quantized model is this many accuracy points below float (MSE: this many percent above float)
DEFAULT_MARGIN = 1.0

ACCURACY = "accuracy"
MSE = "mse"


def load_eval_data(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``x`` and targets ``y`` from an .npz: integer class labels, or float targets (regression)."""
    from qdeploy.data import load_xy

    x, y = load_xy(path, "evaluation data", "targets")
    if not np.issubdtype(y.dtype, np.number):
        raise InputDataError(f"evaluation data {path}: 'y' holds {y.dtype} values; class indices or numbers are needed")
    return x, y


def metric_kind(y: np.ndarray, outputs: np.ndarray) -> str:
    """Accuracy for integer labels against two or more outputs per sample (logits), else MSE."""
    outputs = outputs.reshape(len(outputs), -1)
    if np.issubdtype(y.dtype, np.integer) and y.ndim == 1 and outputs.shape[1] >= 2:
        return ACCURACY
    return MSE


def score(outputs: np.ndarray, y: np.ndarray, kind: str) -> float:
    """Top-1 accuracy (``kind='accuracy'``) or mean squared error against ``y``."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if kind == ACCURACY:
        return float(np.mean(outputs.reshape(len(outputs), -1).argmax(axis=1) == y))
    target = np.asarray(y, dtype=np.float64)
    if target.size != outputs.size:
        raise InputDataError(
            f"evaluation targets 'y' have shape {target.shape} but the model's outputs are {outputs.shape}; give one "
            "target per output (regression), or integer class labels (classification)"
        )
    return float(np.mean((outputs.reshape(target.shape) - target) ** 2))


@dataclass
class Evaluation:
    """Float vs quantized on the user's data; ``warnings`` are one-line messages for the terminal."""

    kind: str  # "accuracy" or "mse"
    samples: int
    float_value: float
    quantized_value: float
    margin: float
    label: str  # what was quantized, e.g. "W4A8 auto (gptq)"
    weight_bits: int | None = None
    act_bits: int | None = None
    #: other variants scored on the same data (method auto's candidates): label, weight_bits, act_bits, value
    variants: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the terminal: float vs quantized (the warnings are separate lines)."""
        if self.kind == ACCURACY:
            change = 100 * (self.quantized_value - self.float_value)
            return (
                f"accuracy on {self.samples} evaluation samples: float {100 * self.float_value:.2f} % -> quantized "
                f"{100 * self.quantized_value:.2f} % ({change:+.2f} points, {self.label})"
            )
        return (
            f"MSE on {self.samples} evaluation samples: float {self.float_value:.4g} -> quantized "
            f"{self.quantized_value:.4g} ({self.label})"
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _collapse_warning(float_out: np.ndarray, quant_out: np.ndarray) -> str | None:
    float_classes = np.unique(float_out.reshape(len(float_out), -1).argmax(axis=1))
    quant_classes = np.unique(quant_out.reshape(len(quant_out), -1).argmax(axis=1))
    if len(quant_classes) == 1 and len(float_classes) > 1:
        return (
            f"the quantized model collapsed: it predicts class {int(quant_classes[0])} for every evaluation sample "
            f"(the float model predicts {len(float_classes)} classes); use more bits or --method auto"
        )
    return None


def evaluate(
    float_predict: Callable[[np.ndarray], np.ndarray],
    quant_predict: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    label: str,
    margin: float = DEFAULT_MARGIN,
    weight_bits: int | None = None,
    act_bits: int | None = None,
) -> Evaluation:
    """Score both predictors on (x, y) and name what went wrong: a collapse to one class, or a loss beyond
    ``margin`` (accuracy points; for MSE, percent above the float model's MSE)."""
    if margin < 0:
        raise InputDataError(f"the evaluation margin must be >= 0, got {margin}")
    float_out = np.asarray(float_predict(x))
    quant_out = np.asarray(quant_predict(x))
    kind = metric_kind(y, float_out)
    result = Evaluation(
        kind=kind,
        samples=len(x),
        float_value=score(float_out, y, kind),
        quantized_value=score(quant_out, y, kind),
        margin=margin,
        label=label,
        weight_bits=weight_bits,
        act_bits=act_bits,
    )
    if kind == ACCURACY:
        collapse = _collapse_warning(float_out, quant_out)
        if collapse:
            result.warnings.append(collapse)
        lost = 100 * (result.float_value - result.quantized_value)
        if lost > margin:
            result.warnings.append(
                f"the quantized model loses {lost:.2f} accuracy points (more than the margin of {margin:g}); "
                "try --method auto, more bits, or qdeploy qat"
            )
    elif result.quantized_value > result.float_value * (1 + margin / 100):
        grown = 100 * (result.quantized_value / max(result.float_value, np.finfo(float).tiny) - 1)
        result.warnings.append(
            f"the quantized model's MSE is {grown:.1f} % above the float model's (more than the margin of {margin:g} %); "
            "try --method auto --auto-objective mse or more bits"
        )
    return result


def attach(model: Any, evaluation: Evaluation) -> None:
    """Record ``evaluation`` in a model's metadata (ModelProto or ModelWrapper, changed in place; save it after)."""
    proto = getattr(model, "model", model)
    kept = [prop for prop in proto.metadata_props if prop.key != EVAL_METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key=EVAL_METADATA_KEY, value=json.dumps(evaluation.to_json()))


def stored_evaluation(model: Any) -> dict[str, Any] | None:
    """The evaluation record a ``--eval`` run stored in a model (ModelProto or ModelWrapper), or None."""
    proto = getattr(model, "model", model)
    for prop in proto.metadata_props:
        if prop.key == EVAL_METADATA_KEY:
            return json.loads(prop.value)
    return None
