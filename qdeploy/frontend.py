"""Torch front end: load a user's nn.Module, quantize it with brevitas, calibrate, export QONNX."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

from qdeploy.config import Calibration, GPFQAlphabet, Method, QuantizeConfig, ScaleKind, WeightRounding
from qdeploy.data import check_array
from qdeploy.errors import ModelLoadError, QDeployError, UnsupportedModelError, one_line
from qdeploy.ir import load_model

log = logging.getLogger(__name__)


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


def _quantizers(cfg: QuantizeConfig):
    """brevitas quantizer classes for the configuration (injector classes are configured by subclassing)."""
    from brevitas.inject.enum import ScalingImplType, ScalingPerOutputType
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8ActPerTensorFloat,
        Int8WeightPerTensorFixedPoint,
        Int8WeightPerTensorFloat,
        Int32Bias,
        Uint8ActPerTensorFixedPoint,
        Uint8ActPerTensorFloat,
    )
    from brevitas.quant.base import MSESymmetricScale

    po2 = cfg.scale is ScaleKind.PO2
    weight_attrs = {"bit_width": cfg.weight_bits}
    if cfg.rounding is not WeightRounding.RTN or cfg.trainable_scales:
        # a parameter initialized from the weights: frozen for GPTQ/GPFQ (see qdeploy.passes.ptq.gpxq), learned by QAT
        weight_attrs["scaling_impl_type"] = ScalingImplType.PARAMETER_FROM_STATS
    if cfg.per_channel:
        weight_attrs["scaling_per_output_type"] = ScalingPerOutputType.CHANNEL
    # MSE range setting: brevitas's grid search for the scale minimizing the quantization error, on every quantizer.
    mse = (MSESymmetricScale,) if cfg.calibration is Calibration.MSE else ()
    weight = type("QDeployWeight", (*mse, Int8WeightPerTensorFixedPoint if po2 else Int8WeightPerTensorFloat), weight_attrs)
    # min-max range setting is the 100th percentile of the observed activations.
    percentile = 100.0 if cfg.calibration is Calibration.MINMAX else cfg.percentile
    act_attrs = {"bit_width": cfg.act_bits, "high_percentile_q": percentile}
    unsigned = type("QDeployUAct", (*mse, Uint8ActPerTensorFixedPoint if po2 else Uint8ActPerTensorFloat), act_attrs)
    signed = type("QDeploySAct", (*mse, Int8ActPerTensorFixedPoint if po2 else Int8ActPerTensorFloat), act_attrs)
    # Int32Bias: bias scale = input scale x weight scale, so the bias adds exactly into the integer accumulator.
    return weight, Int32Bias, unsigned, signed


def quantize(
    model: nn.Module,
    calib: np.ndarray,
    weight_bits: int = 4,
    act_bits: int = 8,
    config: QuantizeConfig | None = None,
    **options,
) -> nn.Module:
    """Post-training quantization of ``model`` with brevitas: weights ``weight_bits`` (per channel by default),
    the input and the activations between layers ``act_bits`` per tensor (the input unsigned when no calibration
    input is negative; the quantizer behind the last layer keeps at least 8 bits), ranges calibrated on ``calib``
    (batch first).

    ``options`` are QuantizeConfig fields (``per_channel``, ``scale``, ``calibration``, ``percentile``,
    ``equalize``, ``bias_correction``, ``rounding`` = rtn | gptq | gpfq | adaround, ``gpfq_alphabet``,
    ``gpfq_sparsity``, ``adaround_iters``, ``method`` = custom | auto, ``trainable_scales``, ``layer_weight_bits``,
    ``unsigned_input``, ``output_bits``);
    unknown names raise. Returns a brevitas-quantized module ready for ``qdeploy.export``.
    """
    import brevitas.nn as qnn
    from brevitas.graph.quantize import preprocess_for_quantize
    from brevitas.graph.quantize import quantize as brevitas_quantize

    from qdeploy.passes.ptq import flatten_function, output_quant, unsigned_input
    from qdeploy.passes.ptq.adaround import apply_adaround
    from qdeploy.passes.ptq.calibrate import calibrate, correct_bias
    from qdeploy.passes.ptq.gpfq_alphabet import apply_gpfq_alphabet
    from qdeploy.passes.ptq.gpxq import apply_gpxq, initialize_frozen_weight_scales

    if config is None:
        from qdeploy.config import from_mapping

        config = from_mapping(QuantizeConfig, {"weight_bits": weight_bits, "act_bits": act_bits, **options}, "quantize()")
    calib = check_array(calib, None, "calibration data")
    if len(calib) < 8:
        raise QDeployError(f"calibration data has {len(calib)} samples; give at least 8 (hundreds are better)")
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise QDeployError(f"the float model's {name} contains NaN or Inf; fix or retrain the layer before quantizing")
    if config.method is Method.AUTO:
        from qdeploy.passes.ptq.auto import quantize_auto

        return quantize_auto(model, calib, config, lambda m, c, cfg: quantize(m, c, config=cfg), torch_forward)
    # brevitas rewrites the module graph in place and shares parameters with it: work on a copy, so equalization
    # and bias correction never change the caller's float model.
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        try:
            model(torch.from_numpy(calib[:2]))
        except Exception as exc:
            raise QDeployError(
                f"the float model fails on calibration data of shape {calib.shape[1:]}: "
                f"{type(exc).__name__}: {one_line(exc)}"
            ) from exc
    weight, bias, unsigned, signed = _quantizers(config)
    layer_options = {"weight_quant": weight, "bias_quant": bias, "return_quant_tensor": True}
    quant_classes = {nn.Linear: qnn.QuantLinear, nn.Conv2d: qnn.QuantConv2d, nn.Conv1d: qnn.QuantConv1d}
    compute_map = {float_class: (quant_class, layer_options) for float_class, quant_class in quant_classes.items()}
    for tagged, bits in _tag_mixed_precision_layers(model, config.layer_weight_bits, tuple(quant_classes)).items():
        weight_bits = _quantizers(dataclasses.replace(config, weight_bits=bits))[0]
        compute_map[tagged] = (quant_classes[tagged.__mro__[1]], {**layer_options, "weight_quant": weight_bits})
    act_map = {nn.ReLU: (qnn.QuantReLU, {"act_quant": unsigned, "return_quant_tensor": True})}
    identity_map = {
        "signed": (qnn.QuantIdentity, {"act_quant": signed, "return_quant_tensor": True}),
        "unsigned": (qnn.QuantIdentity, {"act_quant": unsigned, "return_quant_tensor": True}),
    }
    try:
        # BatchNorm is folded into the preceding layer here; CLE (20 iterations, as brevitas's PTQ examples) on request.
        graph_model = preprocess_for_quantize(model, equalize_iters=20 if config.equalize else 0, equalize_merge_bias=True)
        graph_model, _ = flatten_function.apply(graph_model)
        qmodel = brevitas_quantize(
            graph_model, quant_identity_map=identity_map, compute_layer_map=compute_map, quant_act_map=act_map
        )
    except Exception as exc:
        raise UnsupportedModelError(
            f"brevitas could not trace/quantize the model ({type(exc).__name__}: {one_line(exc)}); "
            "use Linear/Conv/ReLU/pooling modules without data-dependent control flow"
        ) from exc
    if not any(isinstance(m, (qnn.QuantLinear, qnn.QuantConv2d, qnn.QuantConv1d)) for m in qmodel.modules()):
        raise UnsupportedModelError("the model has no Linear or Conv layer to quantize")
    output_bits = config.output_bits or max(config.act_bits, output_quant.OUTPUT_BITS)
    if output_bits != config.act_bits:
        qmodel, _ = output_quant.apply(qmodel, _quantizers(dataclasses.replace(config, act_bits=output_bits))[3])
    if config.unsigned_input is not False:
        qmodel, _ = unsigned_input.apply(qmodel, calib, unsigned, force=bool(config.unsigned_input))
    if config.trainable_scales and config.rounding is WeightRounding.RTN:
        initialize_frozen_weight_scales(qmodel, calib[: config.batch_size])
    if config.rounding is not WeightRounding.RTN:
        if len(calib) < 64:
            raise QDeployError(f"{config.rounding.value} needs at least 64 calibration samples, got {len(calib)}")
        initialize_frozen_weight_scales(qmodel, calib[: config.batch_size])
    qmodel = calibrate(qmodel, calib, batch_size=config.batch_size)
    if config.rounding is WeightRounding.ADAROUND:
        qmodel = apply_adaround(qmodel, calib, iters=config.adaround_iters, batch_size=config.batch_size, seed=config.seed)
    elif config.rounding is WeightRounding.GPFQ and (
        config.gpfq_alphabet is not GPFQAlphabet.INT or config.gpfq_sparsity > 0
    ):
        # brevitas's GPFQ has neither alphabets nor the L1 term: qdeploy's own (same greedy pass)
        qmodel = apply_gpfq_alphabet(
            qmodel, calib, config.gpfq_alphabet, config.gpfq_sparsity, batch_size=config.batch_size, seed=config.seed
        )
    elif config.rounding is not WeightRounding.RTN:
        qmodel = apply_gpxq(qmodel, calib, config.rounding.value, batch_size=config.batch_size)
    if config.bias_correction:
        qmodel = correct_bias(qmodel, calib, batch_size=config.batch_size)
    return qmodel


def _tag_mixed_precision_layers(model: nn.Module, layer_bits, kinds: tuple[type, ...]) -> dict[type, int]:
    """Give layers with their own bit width a subclass of their type, so brevitas's type-keyed layer map can
    quantize them differently. The subclass claims torch.nn's module so torch.fx keeps it a leaf module."""
    modules = dict(model.named_modules())
    tagged: dict[tuple[type, int], type] = {}
    for name, bits in layer_bits.items():
        module = modules.get(name)
        if module is None or type(module) not in kinds:
            known = [n for n, m in modules.items() if type(m) in kinds]
            raise QDeployError(f"layer_weight_bits names {name!r}, which is not a Linear/Conv layer; layers: {known}")
        key = (type(module), bits)
        if key not in tagged:
            tagged[key] = type(f"{key[0].__name__}W{bits}", (key[0],), {"__module__": key[0].__module__})
        module.__class__ = tagged[key]
    return {cls: bits for (_, bits), cls in tagged.items()}


def torch_forward(qmodel: nn.Module, x: np.ndarray) -> np.ndarray:
    """Run a (quantized) torch module on numpy inputs; QuantTensor outputs are unwrapped."""
    with torch.no_grad():
        out = qmodel(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return (out.value if hasattr(out, "value") else out).detach().numpy()


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
