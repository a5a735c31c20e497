"""Torch front end: load a user's nn.Module; the API entries that quantize it (the work is ``qdeploy.passes``'s,
imported when called) and export it to QONNX."""

from __future__ import annotations

import importlib.util
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

from qdeploy.config import QuantizeConfig, from_mapping
from qdeploy.data import check_array
from qdeploy.errors import InputDataError, ModelLoadError, QDeployError, one_line
from qdeploy.ir import load_model


def load_factory(spec: str, weights: str | Path | None = None) -> nn.Module:
    """Build a model from ``path/to/file.py:factory`` (a callable returning an nn.Module), then load ``weights``."""
    if ":" not in spec:
        raise ModelLoadError(f"model spec {spec!r} must look like path/to/file.py:factory")
    file_part, factory_name = spec.rsplit(":", 1)
    path = Path(file_part)
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist")
    module_name = f"qdeploy_user_{path.stem}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ModelLoadError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module
    # The user's file may import its siblings (e.g. examples/digits.py's own helpers).
    sys.path.insert(0, str(path.resolve().parent))
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:
        raise ModelLoadError(f"importing {path} failed: {type(exc).__name__}: {one_line(exc)}") from exc
    finally:
        sys.path.pop(0)
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ModelLoadError(f"{path} has no callable named {factory_name!r}")
    try:
        model = factory()
    except Exception as exc:
        raise ModelLoadError(f"factory {spec} raised {type(exc).__name__}: {one_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"factory {spec} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        weights = Path(weights)
        if not weights.exists():
            raise ModelLoadError(f"weights file {weights} does not exist")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:
            raise ModelLoadError(f"loading weights {weights} failed: {type(exc).__name__}: {one_line(exc)}") from exc
    return model.eval()


@dataclass(frozen=True)
class InputExpectation:
    """What a model's first layer takes: ``words`` for an error message, ``fits(shape)`` for a per-sample shape."""

    words: str
    fits: Callable[[tuple[int, ...]], bool]


def expected_input(model: nn.Module) -> InputExpectation | None:
    """What the model's first layer takes, read from the first Linear/Conv layer the module defines (for a
    Sequential, the first it runs) and whether an nn.Flatten comes before it. None when it defines none."""
    flatten_first = False
    for name, module in model.named_modules():
        if isinstance(module, nn.Flatten):
            flatten_first = True
        elif isinstance(module, nn.Linear):
            n = module.in_features
            layer = f"its first layer {name} is Linear({n}, {module.out_features})"
            if flatten_first:
                return InputExpectation(f"any shape with {n} values per sample ({layer})", lambda s, n=n: math.prod(s) == n)
            return InputExpectation(f"(..., {n}) per sample ({layer})", lambda s, n=n: len(s) >= 1 and s[-1] == n)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            spatial = {nn.Conv1d: "L", nn.Conv2d: "H, W", nn.Conv3d: "D, H, W"}[type(module)]
            dims, channels = spatial.count(",") + 2, module.in_channels
            layer = f"its first layer {name} is {type(module).__name__}({channels}, {module.out_channels})"
            return InputExpectation(
                f"({channels}, {spatial}) per sample ({layer})", lambda s, d=dims, c=channels: len(s) == d and s[0] == c
            )
    return None


def check_model_input(model: nn.Module, x: np.ndarray, what: str) -> None:
    """Run the float model on two samples of ``x``; when the data's shape is what fails, say which shape the model
    expects (torch's own words name tensor sizes inside the model, not what the data should look like)."""
    was_training = model.training  # the caller's model leaves as it came (eval mode: BatchNorm uses its statistics)
    try:
        with torch.no_grad():
            model.eval()(torch.from_numpy(np.ascontiguousarray(x[:2], dtype=np.float32)))
    except Exception as exc:
        shape = tuple(int(d) for d in x.shape[1:])
        expected = expected_input(model)
        if expected is not None and expected.fits(shape):
            # the shape is what the first layer takes: the failure is elsewhere in the model, and the stage that
            # runs it next (PTQ, binarisation, mixed precision) names the layer it cannot handle
            return
        expectation = f"the model expects {expected.words}" if expected else "check the data against the model's input"
        raise InputDataError(
            f"the float model fails on {what} of per-sample shape {shape}: {expectation} "
            f"(torch: {type(exc).__name__}: {one_line(exc)})"
        ) from exc
    finally:
        model.train(was_training)


def quantize(
    model: nn.Module,
    calib: np.ndarray,
    weight_bits: int = 4,
    act_bits: int = 8,
    config: QuantizeConfig | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
    **options,
) -> nn.Module:
    """Post-training quantization of ``model`` with brevitas: weights ``weight_bits`` (per channel by default),
    the input and the activations between layers ``act_bits`` per tensor (the input unsigned when no calibration
    input is negative; the quantizer behind the last layer keeps at least 8 bits), ranges calibrated on ``calib``
    (batch first).

    ``options`` are QuantizeConfig fields (``per_channel``, ``scale``, ``calibration``, ``percentile``,
    ``equalize``, ``bias_correction``, ``rounding`` = rtn | gptq | gpfq | adaround, ``gpfq_alphabet``,
    ``gpfq_sparsity``, ``adaround_iters``, ``method`` = custom | auto, ``trainable_scales``, ``layer_weight_bits``,
    ``unsigned_input``, ``output_bits``); unknown names raise. A ``config`` replaces all of them. Returns a
    brevitas-quantized module ready for ``qdeploy.export``; the float model is not modified. The work is
    ``qdeploy.passes.ptq.compose``'s. ``evaluate`` (a quantized module -> score on labelled data) is recorded for
    each of ``method="auto"``'s candidates (``--eval``).
    """
    from qdeploy.passes.ptq.compose import quantize as compose

    if config is None:
        config = from_mapping(QuantizeConfig, {"weight_bits": weight_bits, "act_bits": act_bits, **options}, "quantize()")
    calib = check_array(calib, None, "calibration data")
    check_model_input(model, calib, "calibration data")
    return compose(model, calib, config, evaluate)


def torch_forward(qmodel: nn.Module, x: np.ndarray) -> np.ndarray:
    """Run a (quantized) torch module on numpy inputs; QuantTensor outputs are unwrapped."""
    from qdeploy.passes.ptq.pipeline import torch_forward as forward

    return forward(qmodel, x)


def qat(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    weight_bits: int = 4,
    act_bits: int = 8,
    epochs: int = 5,
    lr: float = 1e-3,
    optimizer: str = "adamw",
    checkpoint: str | Path | None = None,
    resume: bool = False,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    val_fraction: float = 0.1,
    scale_lr: float | None = None,
    schedule: str = "cosine",
    seed: int = 0,
    batch_size: int = 64,
    **options,
) -> nn.Module:
    """Quantization-aware training: PTQ-initialize (``quantize`` on the first samples of ``x``, weight scales
    trainable), then fine-tune on (x, y) with the straight-through estimator and keep the state with the best
    held-out accuracy (``validation`` data, else ``val_fraction`` of (x, y); the PTQ start counts too).
    ``options`` go to ``quantize``; the training options are ``qdeploy.passes.qat.qat_train``'s."""
    from qdeploy.passes.qat import qat_train

    x = check_array(x, None, "training data")
    qmodel = quantize(model, x[:512], weight_bits=weight_bits, act_bits=act_bits, trainable_scales=True, **options)
    qmodel, _ = qat_train(
        qmodel,
        x,
        y,
        epochs=epochs,
        lr=lr,
        optimizer=optimizer,
        checkpoint=checkpoint,
        resume=resume,
        validation=validation,
        val_fraction=val_fraction,
        scale_lr=scale_lr,
        schedule=schedule,
        seed=seed,
        batch_size=batch_size,
    )
    return qmodel


def export(qmodel: nn.Module, example: np.ndarray, path: str | Path | None = None) -> ModelWrapper:
    """Export a brevitas-quantized module to a cleaned QONNX graph (saved to ``path`` when given).

    Uses the TorchScript exporter (``dynamo=False``): brevitas's dynamo path rejects quantized biases.
    Hybrid models (with ``qdeploy.quantum.QuantumLayer``s) go through ``qdeploy.quantum.export_hybrid``.
    """
    from brevitas.export import export_qonnx

    from qdeploy.quantum.export import export_hybrid, has_quantum_layers

    if has_quantum_layers(qmodel):
        return export_hybrid(qmodel, example, path)
    example = check_array(example, None, "export example")[:1]
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        try:
            export_qonnx(qmodel.eval(), torch.from_numpy(example), export_path=str(raw), dynamo=False)
        except Exception as exc:
            raise QDeployError(f"brevitas QONNX export failed: {type(exc).__name__}: {one_line(exc)}") from exc
        graph = load_model(raw)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        graph.save(str(path))
    return graph
