"""One post-training quantization pipeline, as a ``QuantizeConfig`` describes it: brevitas's graph quantization
with qdeploy's quantizer classes, then qdeploy's graph fixes (``flatten_function``, ``output_quant``,
``unsigned_input``), range calibration, weight rounding (GPTQ / GPFQ / AdaRound) and bias correction, in that order.

``method="auto"`` (``auto.py``) runs this pipeline once per candidate; ``compose.quantize`` is the entry that checks
the inputs and picks one of the two.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from qdeploy.config import Calibration, GPFQAlphabet, QuantizeConfig, ScaleKind, WeightRounding
from qdeploy.errors import QDeployError, UnsupportedModelError, one_line
from qdeploy.passes.ptq import flatten_function, output_quant, unsigned_input
from qdeploy.passes.ptq.adaround import apply_adaround
from qdeploy.passes.ptq.calibrate import calibrate, correct_bias
from qdeploy.passes.ptq.gpfq_alphabet import apply_gpfq_alphabet
from qdeploy.passes.ptq.gpxq import apply_gpxq, initialize_frozen_weight_scales


@dataclasses.dataclass(frozen=True)
class Quantizers:
    """The brevitas quantizer classes of one configuration."""

    weight: type
    bias: type
    unsigned_act: type
    signed_act: type


def quantizers(config: QuantizeConfig) -> Quantizers:
    """brevitas quantizer classes for ``config`` (brevitas's injector classes are configured by subclassing)."""
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

    po2 = config.scale is ScaleKind.PO2
    weight_attrs = {"bit_width": config.weight_bits}
    if config.rounding is not WeightRounding.RTN or config.trainable_scales:
        # a parameter initialized from the weights: frozen for GPTQ/GPFQ (see qdeploy.passes.ptq.gpxq), learned by QAT
        weight_attrs["scaling_impl_type"] = ScalingImplType.PARAMETER_FROM_STATS
    if config.per_channel:
        weight_attrs["scaling_per_output_type"] = ScalingPerOutputType.CHANNEL
    # MSE range setting: brevitas's grid search for the scale minimizing the quantization error, on every quantizer.
    mse = (MSESymmetricScale,) if config.calibration is Calibration.MSE else ()
    weight = type("QDeployWeight", (*mse, Int8WeightPerTensorFixedPoint if po2 else Int8WeightPerTensorFloat), weight_attrs)
    # min-max range setting is the 100th percentile of the observed activations.
    percentile = 100.0 if config.calibration is Calibration.MINMAX else config.percentile
    act_attrs = {"bit_width": config.act_bits, "high_percentile_q": percentile}
    unsigned = type("QDeployUAct", (*mse, Uint8ActPerTensorFixedPoint if po2 else Uint8ActPerTensorFloat), act_attrs)
    signed = type("QDeploySAct", (*mse, Int8ActPerTensorFixedPoint if po2 else Int8ActPerTensorFloat), act_attrs)
    # Int32Bias: bias scale = input scale x weight scale, so the bias adds exactly into the integer accumulator.
    return Quantizers(weight, Int32Bias, unsigned, signed)


def run_pipeline(model: nn.Module, calib: np.ndarray, config: QuantizeConfig) -> nn.Module:
    """Quantize a copy of ``model`` with the pipeline ``config`` describes (``method`` is not looked at), calibrated
    on ``calib``. The caller's float model is never modified."""
    import brevitas.nn as qnn
    from brevitas.graph.quantize import preprocess_for_quantize
    from brevitas.graph.quantize import quantize as brevitas_quantize

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
    chosen = quantizers(config)
    layer_options = {"weight_quant": chosen.weight, "bias_quant": chosen.bias, "return_quant_tensor": True}
    quant_classes = {nn.Linear: qnn.QuantLinear, nn.Conv2d: qnn.QuantConv2d, nn.Conv1d: qnn.QuantConv1d}
    compute_map = {float_class: (quant_class, layer_options) for float_class, quant_class in quant_classes.items()}
    for tagged, bits in tag_mixed_precision_layers(model, config.layer_weight_bits, tuple(quant_classes)).items():
        weight = quantizers(dataclasses.replace(config, weight_bits=bits)).weight
        compute_map[tagged] = (quant_classes[tagged.__mro__[1]], {**layer_options, "weight_quant": weight})
    act_map = {nn.ReLU: (qnn.QuantReLU, {"act_quant": chosen.unsigned_act, "return_quant_tensor": True})}
    identity_map = {
        "signed": (qnn.QuantIdentity, {"act_quant": chosen.signed_act, "return_quant_tensor": True}),
        "unsigned": (qnn.QuantIdentity, {"act_quant": chosen.unsigned_act, "return_quant_tensor": True}),
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
        qmodel, _ = output_quant.apply(qmodel, quantizers(dataclasses.replace(config, act_bits=output_bits)).signed_act)
    if config.unsigned_input is not False:
        qmodel, _ = unsigned_input.apply(qmodel, calib, chosen.unsigned_act, force=bool(config.unsigned_input))
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


def tag_mixed_precision_layers(model: nn.Module, layer_bits: Mapping[str, int], kinds: tuple[type, ...]) -> dict[type, int]:
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
