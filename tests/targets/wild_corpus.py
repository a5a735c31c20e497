"""The corpus of models nobody on the team wrote: the public QONNX files in ``../shared/fixtures`` and raw brevitas
exports (every quantizer family, brevitas's own defaults: float biases, no output quantizer) and FINN's BNN-PYNQ
networks with random weights. Shared by ``tests/targets/test_wild.py`` and ``benchmarks/wild.py``.

Each generated model is described by a ``BrevitasCase`` (a name and how to build the module), so a test can export
a handful and the benchmark all of them, with the same names in both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures"
FIXTURE_FOLDERS = ("wild", "qonnx")
FIXTURES_MISSING = f"QONNX fixture folders not found under {FIXTURES} (they ship beside the repository)"


def fixture_files() -> list[Path]:
    """Every ``.onnx`` file of the wild and model-zoo fixture folders (empty when the folders are missing)."""
    return sorted(path for folder in FIXTURE_FOLDERS for path in (FIXTURES / folder).glob("*.onnx"))


@dataclass(frozen=True)
class BrevitasCase:
    """A brevitas model to export raw: ``build()`` returns the module, ``input_shape`` its input without the batch.
    ``build()`` may instead return an ``onnx.ModelProto`` (a graph written by hand, FINN-style), saved as it is;
    ``edit`` changes the exported graph the way other tools write it (a rounding mode, a 1-bit quantizer)."""

    name: str
    build: Callable[[], object]
    input_shape: tuple[int, ...]
    edit: Callable[[object], object] | None = None


def _quantizers(weight: str, act: str, bias: str | None, bits: int):
    import brevitas.quant as bq

    weight_quant = getattr(bq, weight).let(bit_width=bits)
    act_quant = getattr(bq, act).let(bit_width=bits)
    bias_quant = getattr(bq, bias) if bias else None
    return weight_quant, act_quant, bias_quant


def brevitas_mlp(weight: str, act: str, bias: str | None, bits: int, output_quant: bool, seed: int = 0):
    """Input quantizer -> QuantLinear -> QuantReLU -> QuantLinear (-> output quantizer), random weights. Layers
    return plain tensors (with zero-point quantizers brevitas has no quantized product to return); the quantizers
    feeding a layer return quantized tensors, which integer bias quantizers need for their scale."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    torch.manual_seed(seed)
    weight_quant, act_quant, bias_quant = _quantizers(weight, act, bias, bits)
    layers = [
        qnn.QuantIdentity(act_quant=act_quant, return_quant_tensor=True),
        qnn.QuantLinear(16, 24, bias=True, weight_quant=weight_quant, bias_quant=bias_quant),
        qnn.QuantReLU(act_quant=_unsigned(act, bits), return_quant_tensor=True),
        qnn.QuantLinear(24, 10, bias=True, weight_quant=weight_quant, bias_quant=bias_quant),
    ]
    if output_quant:
        layers.append(qnn.QuantIdentity(act_quant=act_quant, return_quant_tensor=False))
    return nn.Sequential(*layers)


def brevitas_cnn(weight: str, act: str, bias: str | None, bits: int, output_quant: bool, seed: int = 0):
    """Input quantizer -> QuantConv2d -> QuantReLU -> MaxPool -> flatten -> QuantLinear (-> output quantizer)."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    torch.manual_seed(seed)
    weight_quant, act_quant, bias_quant = _quantizers(weight, act, bias, bits)
    layers = [
        qnn.QuantIdentity(act_quant=act_quant, return_quant_tensor=True),
        qnn.QuantConv2d(1, 6, 3, bias=True, weight_quant=weight_quant, bias_quant=bias_quant),
        qnn.QuantReLU(act_quant=_unsigned(act, bits), return_quant_tensor=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        qnn.QuantLinear(6 * 3 * 3, 10, bias=True, weight_quant=weight_quant, bias_quant=bias_quant),
    ]
    if output_quant:
        layers.append(qnn.QuantIdentity(act_quant=act_quant, return_quant_tensor=False))
    return nn.Sequential(*layers)


def _unsigned(act: str, bits: int):
    """The ReLU's quantizer: the unsigned member of the activation quantizer's family."""
    import brevitas.quant as bq

    unsigned = {
        "Int8ActPerTensorFloat": "Uint8ActPerTensorFloat",
        "Int8ActPerTensorFixedPoint": "Uint8ActPerTensorFixedPoint",
        "ShiftedUint8ActPerTensorFloat": "Uint8ActPerTensorFloat",
    }.get(act, act)
    return getattr(bq, unsigned).let(bit_width=bits)


# (weight quantizer, activation quantizer) families: float scales, fixed point (power-of-two scales), per tensor and
# per channel, signed and unsigned activations, asymmetric (zero point) activations.
FAMILIES = {
    "float_tensor": ("Int8WeightPerTensorFloat", "Int8ActPerTensorFloat"),
    "float_channel": ("Int8WeightPerChannelFloat", "Int8ActPerTensorFloat"),
    "float_uint": ("Int8WeightPerTensorFloat", "Uint8ActPerTensorFloat"),
    "fixed_tensor": ("Int8WeightPerTensorFixedPoint", "Int8ActPerTensorFixedPoint"),
    "fixed_uint": ("Int8WeightPerTensorFixedPoint", "Uint8ActPerTensorFixedPoint"),
    "shifted_uint": ("Int8WeightPerChannelFloat", "ShiftedUint8ActPerTensorFloat"),
    "shifted_weight": ("ShiftedUint8WeightPerTensorFloat", "Int8ActPerTensorFloat"),
}
BIASES = {"floatbias": None, "int32bias": "Int32Bias", "int16bias": "Int16Bias"}


def brevitas_cases(bits: tuple[int, ...] = (2, 4, 8)) -> list[BrevitasCase]:
    """Every family x bias kind x bit width x (with/without output quantizer) x (MLP, CNN)."""
    cases = []
    for family, (weight, act) in FAMILIES.items():
        for bias_name, bias in BIASES.items():
            for width in bits:
                for output_quant in (False, True):
                    for arch, builder, shape in (("mlp", brevitas_mlp, (16,)), ("cnn", brevitas_cnn, (1, 8, 8))):
                        name = f"brevitas_{arch}_{family}_{bias_name}_{width}b{'_outq' if output_quant else ''}"
                        cases.append(
                            BrevitasCase(
                                name,
                                _bind(builder, weight, act, bias, width, output_quant),
                                shape,
                            )
                        )
    return cases


def _bind(builder, weight, act, bias, width, output_quant):
    return lambda: builder(weight, act, bias, width, output_quant)


def finn_cases() -> list[BrevitasCase]:
    """FINN's BNN-PYNQ networks (``brevitas_examples.bnn_pynq``) with random weights: TFC/SFC/LFC, CNV."""
    from brevitas_examples.bnn_pynq import models

    cases = [
        BrevitasCase(f"finn_{name}", _finn(models, name), (1, 28, 28))
        for name in ("tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "sfc_1w1a", "sfc_2w2a", "lfc_1w1a", "lfc_1w2a")
    ]
    cases += [BrevitasCase(f"finn_{name}", _finn(models, name), (3, 32, 32)) for name in ("cnv_1w1a", "cnv_2w2a")]
    return cases


def _finn(models, name):
    return lambda: getattr(models, name)(pretrained=False)


def export_case(case: BrevitasCase, folder: Path, seed: int = 0) -> Path:
    """Calibrate the activation quantizers on random data, export with brevitas's QONNX exporter (TorchScript
    path: quantized biases need it), return the file."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas.graph.calibrate import calibration_mode

    model = case.build()
    path = Path(folder) / f"{case.name}.onnx"
    if isinstance(model, onnx.ModelProto):
        onnx.save(model, str(path))
        return path
    generator = torch.Generator().manual_seed(seed)
    calibration = torch.randn((64, *case.input_shape), generator=generator)
    model.eval()
    with torch.no_grad(), calibration_mode(model):
        model(calibration)
    model.eval()
    with torch.no_grad():
        export_qonnx(model, calibration[:1], export_path=str(path), dynamo=False)
    if case.edit is not None:
        from qdeploy.ir import load_model

        edited = case.edit(load_model(path))
        onnx.save(edited.model, str(path))
    return path


def real_like_inputs(shape: tuple[int, ...], count: int, seed: int = 0) -> np.ndarray:
    """Standard-normal inputs (what the generated models were calibrated on), batch first."""
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


#: inputs x samples the verification may hold at once: the golden executor keeps every intermediate tensor of the
#: batch, so image models (ESPCN's 3x128x128) verify on fewer samples than the small dense ones
VERIFY_BUDGET = 1_000_000


def verify_samples_for(path: Path, most: int) -> int:
    """``most`` verification samples, fewer for models with large inputs (at least 8)."""
    from qdeploy.ir import load_model, sample_shape

    size = int(np.prod(sample_shape(load_model(path, clean=False))))
    return int(max(8, min(most, VERIFY_BUDGET // size)))


def compile_outcome(
    path: Path, out: Path, samples: int, target: str = "onnxruntime", input_quant: str | None = None, **options
) -> dict:
    """Compile ``path`` and classify the outcome as the contract names them: ``exact``, ``bounded`` (verified within
    the derived bound), ``refused`` (a QDeployError before anything was written), ``NOT EXACT`` (compiled, outputs
    outside the bound) or ``internal error`` (any other exception, or a refusal that left files behind).
    A QDeployError that wraps a step's unexpected exception (``[step] failed: IndexError: ...``) is an internal error.
    ``input_quant``: a declared input precision (``--input-quant``), recorded in the row; ``options``: the target's
    options (``implement="none"`` for rtl)."""
    import time

    import qdeploy
    from qdeploy.errors import QDeployError

    start = time.perf_counter()
    row: dict = {"model": path.name, "target": target, "verify_samples": samples, "input_quant": input_quant}
    declared = {"input_quant": input_quant} if input_quant else {}
    try:
        artifact = qdeploy.compile(path, target=target, out=out, verify_samples=samples, **declared, **options)
    except QDeployError as exc:
        left_behind = out.exists() or any(out.parent.glob(f".{out.name}.*"))
        # a step's unexpected exception, wrapped as "[step] failed: IndexError: ..." (qdeploy.pipeline): no node, no
        # fix, so not a refusal the contract allows
        wrapped = re.search(r"\] failed: \w+: ", str(exc)) is not None
        row["outcome"] = "internal error" if left_behind or wrapped else "refused"
        row["reason"] = str(exc)
    except Exception as exc:  # the contract's "never": reported, never swallowed silently
        row["outcome"] = "internal error"
        row["reason"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    else:
        report = artifact.report
        row["outcome"] = "exact" if report["bit_exact"] else "bounded" if report["verified"] else "NOT EXACT"
        row["max_abs_error"] = report["max_abs_error"]
        row["outputs"] = f"{report['outputs_equal']}/{report['outputs_compared']}"
        row["bound"] = (report.get("bound") or {}).get("max")
        row["plan"] = _plan(report, target)
        row["integer_kernels"] = report.get("integer_kernels")
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _plan(report: dict, target: str) -> str:
    """How the target computes: onnxruntime's kernels; hls4ml's I/O type and each layer's implementation (L =
    Latency, R = Resource with its reuse factor)."""
    if target == "hls4ml":
        layers = [row for row in report.get("per_layer", []) if "strategy" in row]
        chosen = " ".join(f"{row['strategy'][0]}{row['reuse_factor']}" for row in layers)
        return f"{report.get('io_type', '')} {chosen}".strip()
    config = report.get("session_config", {})
    return "reference kernels" if config.get("session.disable_quant_qdq") == "1" else "integer kernels"


# Variants beyond brevitas's defaults, as people set them: other bit widths, per-channel fixed point, narrow and
# unsigned ranges, FLOOR/CEIL rounding, BatchNorm before or after the activation, 8/24-bit bias quantizers, Conv1d,
# 1-bit signed activations and binary/ternary weights. Each is (name, weight quantizer, activation quantizer, bias
# quantizer, width, architecture, extra settings).
def _quant(name: str, width: int | None, **settings):
    import brevitas.quant as bq

    quant = getattr(bq, name)
    if width is not None:
        settings = {"bit_width": width, **settings}
    return quant.let(**settings) if settings else quant


def brevitas_variant(
    arch: str,
    weight,
    act,
    relu,
    bias,
    output_quant: bool = True,
    batchnorm: str | None = None,
    seed: int = 0,
    activation: str = "relu",
):
    """``arch``: ``mlp`` (16 -> 24 -> 10), ``cnn`` (1x8x8, Conv2d 3x3 -> MaxPool -> Linear), ``conv1d`` (2x16,
    Conv1d k3 -> MaxPool1d -> Linear). ``batchnorm``: ``before_act`` (layer -> BatchNorm -> activation quantizer, as
    FINN's networks), ``after_act`` (activation quantizer -> BatchNorm -> a second quantizer). BatchNorm statistics
    are randomized so it is not the identity. ``activation``: ``relu``, ``tanh`` or ``sigmoid`` (brevitas's
    QuantReLU / QuantTanh / QuantSigmoid: the function, then ``relu`` as its quantizer)."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    torch.manual_seed(seed)
    if arch == "mlp":
        first = qnn.QuantLinear(16, 24, bias=True, weight_quant=weight, bias_quant=bias)
        norm, pool, features = nn.BatchNorm1d(24), [], 24
    elif arch == "cnn":
        first = qnn.QuantConv2d(1, 6, 3, bias=True, weight_quant=weight, bias_quant=bias)
        norm, pool, features = nn.BatchNorm2d(6), [nn.MaxPool2d(2), nn.Flatten()], 6 * 3 * 3
    else:
        first = qnn.QuantConv1d(2, 6, 3, bias=True, weight_quant=weight, bias_quant=bias)
        norm, pool, features = nn.BatchNorm1d(6), [nn.MaxPool1d(2), nn.Flatten()], 6 * 7
    with torch.no_grad():
        norm.running_mean.uniform_(-0.5, 0.5)
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    layers = [qnn.QuantIdentity(act_quant=act, return_quant_tensor=True), first]
    if batchnorm == "before_act":
        layers.append(norm)
    nonlinearity = {"relu": qnn.QuantReLU, "tanh": qnn.QuantTanh, "sigmoid": qnn.QuantSigmoid}[activation]
    layers.append(nonlinearity(act_quant=relu, return_quant_tensor=batchnorm != "after_act"))
    if batchnorm == "after_act":
        layers += [norm, qnn.QuantIdentity(act_quant=act, return_quant_tensor=True)]
    layers += pool
    layers.append(qnn.QuantLinear(features, 10, bias=True, weight_quant=weight, bias_quant=bias))
    if output_quant:
        layers.append(qnn.QuantIdentity(act_quant=act, return_quant_tensor=False))
    return nn.Sequential(*layers)


_SHAPES = {"mlp": (16,), "cnn": (1, 8, 8), "conv1d": (2, 16)}


def _variant(name: str, arch: str, weight: tuple, act: tuple, relu: tuple, bias: str | None, **kw) -> BrevitasCase:
    def build():
        return brevitas_variant(
            arch,
            _quant(*weight[:2], **weight[2]),
            _quant(*act[:2], **act[2]),
            _quant(*relu[:2], **relu[2]),
            _quant(bias, None) if bias else None,
            **kw,
        )

    return BrevitasCase(f"variant_{arch}_{name}", build, _SHAPES[arch])


def variant_cases() -> list[BrevitasCase]:
    """The variants, each on the architectures where it matters (rtl compiles MLPs only, so most have an MLP)."""
    float_w, fixed_w = "Int8WeightPerTensorFloat", "Int8WeightPerTensorFixedPoint"
    float_a, fixed_a = "Int8ActPerTensorFloat", "Int8ActPerTensorFixedPoint"
    float_u, fixed_u = "Uint8ActPerTensorFloat", "Uint8ActPerTensorFixedPoint"
    none: dict = {}
    cases = []
    for arch in ("mlp", "cnn"):
        for width in (3, 5, 6):
            cases.append(
                _variant(
                    f"fixed_{width}b",
                    arch,
                    (fixed_w, width, none),
                    (fixed_a, width, none),
                    (fixed_u, width, none),
                    "Int16Bias",
                )
            )
            cases.append(
                _variant(
                    f"float_{width}b", arch, (float_w, width, none), (float_a, width, none), (float_u, width, none), None
                )
            )
        cases += [
            _variant(
                "fixed_channel_4b",
                arch,
                (fixed_w, 4, {"scaling_per_output_channel": True}),
                (fixed_a, 4, none),
                (fixed_u, 4, none),
                "Int32Bias",
            ),
            _variant(
                "narrow_act_4b", arch, (float_w, 4, none), (float_a, 4, {"narrow_range": True}), (float_u, 4, none), None
            ),
            _variant(
                "wide_weight_4b",
                arch,
                (fixed_w, 4, {"narrow_range": False}),
                (fixed_a, 4, none),
                (fixed_u, 4, none),
                "Int8Bias",
            ),
            _variant(
                "floor_fixed_4b",
                arch,
                (fixed_w, 4, none),
                (fixed_a, 4, {"float_to_int_impl_type": "floor"}),
                (fixed_u, 4, {"float_to_int_impl_type": "floor"}),
                "Int24Bias",
            ),
            _variant(
                "ceil_float_4b",
                arch,
                (float_w, 4, none),
                (float_a, 4, {"float_to_int_impl_type": "ceil"}),
                (float_u, 4, {"float_to_int_impl_type": "ceil"}),
                None,
            ),
            _variant(
                "bn_before_fixed_4b",
                arch,
                (fixed_w, 4, none),
                (fixed_a, 4, none),
                (fixed_u, 4, none),
                "Int32Bias",
                batchnorm="before_act",
            ),
            _variant(
                "bn_after_float_4b",
                arch,
                (float_w, 4, none),
                (float_a, 4, none),
                (float_u, 4, none),
                None,
                batchnorm="after_act",
            ),
            _variant(
                "bn_before_float_noout_4b",
                arch,
                (float_w, 4, none),
                (float_a, 4, none),
                (float_u, 4, none),
                None,
                batchnorm="before_act",
                output_quant=False,
            ),
            _variant(
                "signed1b_act",
                arch,
                ("SignedBinaryWeightPerTensorConst", None, none),
                (float_a, 1, none),
                ("SignedBinaryActPerTensorConst", None, none),
                None,
            ),
            _variant(
                "tanh_float_4b",
                arch,
                (float_w, 4, none),
                (float_a, 4, none),
                (float_a, 4, none),
                None,
                activation="tanh",
            ),
            _variant(
                "sigmoid_fixed_4b",
                arch,
                (fixed_w, 4, none),
                (fixed_a, 4, none),
                (fixed_u, 4, none),
                "Int16Bias",
                activation="sigmoid",
            ),
            _variant(
                "ternary_fixed",
                arch,
                ("SignedTernaryWeightPerTensorConst", None, none),
                (fixed_a, 4, none),
                (fixed_u, 2, none),
                None,
            ),
        ]
    cases += [
        _variant("fixed_4b", "conv1d", (fixed_w, 4, none), (fixed_a, 4, none), (fixed_u, 4, none), "Int16Bias"),
        _variant("float_4b", "conv1d", (float_w, 4, none), (float_a, 4, none), (float_u, 4, none), None),
        _variant(
            "bn_before_float_4b",
            "conv1d",
            (float_w, 4, none),
            (float_a, 4, none),
            (float_u, 4, none),
            None,
            batchnorm="before_act",
        ),
    ]
    return cases


#: brevitas quantizer families beyond the defaults, as post-training and accumulator-aware flows set them: (name,
#: weight, signed activation, unsigned activation, bias, bit width; None: the quantizer's own, binary/ternary/FP8)
MORE_FAMILIES = (
    ("mse_float", "Int8WeightPerTensorFloatMSE", "Int8ActPerTensorFloatMSE", "Uint8ActPerTensorFloatMSE", None, 4),
    ("mse_channel", "Int8WeightPerChannelFloatMSE", "Int8ActPerTensorFloatMSE", "Uint8ActPerTensorFloatMSE", "Int32Bias", 6),
    (
        "mse_fixed",
        "Int8WeightPerTensorFixedPointMSE",
        "Int8ActPerTensorFixedPointMSE",
        "Uint8ActPerTensorFixedPointMSE",
        "Int16Bias",
        3,
    ),
    (
        "mse_fixed_channel",
        "Int8WeightPerChannelFixedPointMSE",
        "Int8ActPerTensorFixedPoint",
        "Uint8ActPerTensorFixedPoint",
        "Int32Bias",
        4,
    ),
    ("decoupled_channel", "Int8WeightPerChannelFloatDecoupled", "Int8ActPerTensorFloat", "Uint8ActPerTensorFloat", None, 6),
    ("decoupled_tensor", "Int4WeightPerTensorFloatDecoupled", "Int8ActPerTensorFloat", "Uint8ActPerTensorFloat", None, 3),
    (
        "norml2_fixed",
        "Int8WeightNormL2PerChannelFixedPoint",
        "Int8ActPerTensorFixedPoint",
        "Uint8ActPerTensorFixedPoint",
        "Int16Bias",
        4,
    ),
    ("a2q", "Int8AccumulatorAwareWeightQuant", "Int8ActPerTensorFloat", "Uint8ActPerTensorFloat", None, 6),
    (
        "a2q_zero_center",
        "Int8AccumulatorAwareZeroCenterWeightQuant",
        "Int8ActPerTensorFloat",
        "Uint8ActPerTensorFloat",
        None,
        3,
    ),
    (
        "shifted_weight_channel",
        "ShiftedUint8WeightPerChannelFloat",
        "Int8ActPerTensorFloat",
        "Uint8ActPerTensorFloat",
        None,
        4,
    ),
    (
        "shifted_weight_mse",
        "ShiftedUint8WeightPerTensorFloatMSE",
        "Int8ActPerTensorFloat",
        "Uint8ActPerTensorFloat",
        None,
        6,
    ),
    (
        "shifted_act_fixed",
        "Int8WeightPerTensorFixedPoint",
        "ShiftedUint8ActPerTensorFixedPoint",
        "Uint8ActPerTensorFixedPoint",
        None,
        4,
    ),
    ("shifted_act_hqo", "Int8WeightPerChannelFloat", "ShiftedUint8ActPerTensorFloatHQO", "Uint8ActPerTensorFloat", None, 6),
    (
        "ternary_act",
        "SignedTernaryWeightPerTensorConst",
        "SignedTernaryActPerTensorConst",
        "Uint8ActPerTensorFloat",
        None,
        None,
    ),
    (
        "bias_internal_float",
        "Int8WeightPerTensorFloat",
        "Int8ActPerTensorFloat",
        "Uint8ActPerTensorFloat",
        "Int8BiasPerTensorFloatInternalScaling",
        3,
    ),
    (
        "bias_internal_fixed",
        "Int8WeightPerTensorFixedPoint",
        "Int8ActPerTensorFixedPoint",
        "Uint8ActPerTensorFixedPoint",
        "Int8BiasPerTensorFixedPointInternalScaling",
        4,
    ),
    ("fp8_e5m2", "Fp8e5m2OCPWeightPerTensorFloat", "Fp8e5m2OCPActPerTensorFloat", "Fp8e5m2OCPActPerTensorFloat", None, None),
    (
        "fp8_e4m3_channel",
        "Fp8e4m3OCPWeightPerChannelFloat",
        "Fp8e4m3OCPActPerTensorFloatMSE",
        "Fp8e4m3OCPActPerTensorFloat",
        None,
        None,
    ),
)


def family_cases() -> list[BrevitasCase]:
    """``MORE_FAMILIES`` on the MLP and CNN skeletons of ``brevitas_variant`` (with an output quantizer)."""
    cases = []
    for name, weight, act, relu, bias, bits in MORE_FAMILIES:
        width = {} if bits is None else {"bit_width": bits}
        suffix = f"_{bits}b" if bits else ""
        for arch in ("mlp", "cnn"):
            build = lambda arch=arch, weight=weight, act=act, relu=relu, bias=bias, width=width: brevitas_variant(  # noqa: E731
                arch,
                _quant(weight, None, **({} if "Const" in weight else width)),
                _quant(act, None, **({} if "Const" in act else width)),
                _quant(relu, None, **width),
                _quant(bias, None) if bias else None,
            )
            cases.append(BrevitasCase(f"family_{arch}_{name}{suffix}", build, _SHAPES[arch]))
    return cases


def all_cases() -> list[BrevitasCase]:
    """Every generated case: brevitas's families (more of them in ``family_cases``), the variants, the crafted graphs,
    FINN's networks, the layer kinds, brevitas_examples' networks and FINN's with randomized BatchNorm, graphs laid out
    as QKeras and FINN write them."""
    generated = brevitas_cases() + family_cases() + variant_cases() + crafted_cases() + finn_cases()
    return generated + layer_cases() + example_cases() + writer_cases()


# -- graphs other tools write: QONNX rounding modes brevitas does not export, a 1-bit signed Quant (qonnx executes
# it as bipolar), FINN-style streamlined graphs (MultiThreshold on float inputs and integer accumulators) ----------


def _datapath_quants(model) -> list:
    return [n for n in model.graph.node if n.op_type == "Quant" and model.get_initializer(n.input[0]) is None]


def _set_rounding(mode: str):
    def edit(model):
        for node in _datapath_quants(model):
            for attribute in node.attribute:
                if attribute.name == "rounding_mode":
                    attribute.s = mode.encode()
        return model

    return edit


def _one_bit(index: int):
    """The ``index``-th datapath Quant becomes 1 bit wide (signed: qonnx makes it -1/+1)."""

    def edit(model):
        node = _datapath_quants(model)[index]
        name = model.make_new_valueinfo_name()
        model.set_initializer(name, np.asarray(1.0, dtype=np.float32))
        node.input[3] = name
        return model

    return edit


def finn_style_graph(conv: bool, bipolar: bool, seed: int = 0) -> onnx.ModelProto:
    """A FINN-streamlined graph written by hand: MultiThreshold on the float input (8 levels, out_bias -4), integer
    weights, per-channel float thresholds on the accumulator (or a bipolar MultiThreshold: out_scale 2, out_bias -1),
    a second integer layer, then a float scale and bias. ``conv``: a 1x8x8 image through a 3x3 Conv (NCHW
    thresholds), MaxPool and Flatten before the dense layer."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    domain = "qonnx.custom_op.general"
    initializers, nodes = [], []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(helper.make_tensor(name, TensorProto.FLOAT, value.shape, value.astype(np.float32).ravel()))
        return name

    def multithreshold(name, source, output, thresholds, layout, **attrs):
        nodes.append(
            helper.make_node(
                "MultiThreshold",
                [source, constant(f"{name}_t", thresholds)],
                [output],
                name=name,
                domain=domain,
                data_layout=layout,
                **attrs,
            )
        )

    in_shape = [1, 1, 8, 8] if conv else [1, 16]
    multithreshold(
        "mt_in",
        "x",
        "l0",
        np.sort(rng.normal(0, 1, (1, 7)), axis=1),
        "NCHW" if conv else "NC",
        out_dtype="INT4",
        out_bias=-4.0,
    )
    channels = 6 if conv else 24
    if conv:
        weights = rng.integers(-3, 4, (channels, 1, 3, 3)).astype(np.float32)
        nodes.append(
            helper.make_node(
                "Conv",
                ["l0", constant("w1", weights)],
                ["a1"],
                name="conv1",
                kernel_shape=[3, 3],
                pads=[0, 0, 0, 0],
                strides=[1, 1],
            )
        )
    else:
        nodes.append(helper.make_node("MatMul", ["l0", constant("w1", rng.integers(-3, 4, (16, 24)))], ["a1"], name="fc1"))
    steps = 1 if bipolar else 3
    span = 40.0 if conv else 30.0
    thresholds = np.sort(rng.uniform(-span, span, (channels, steps)), axis=1)
    attrs = {"out_dtype": "BIPOLAR", "out_scale": 2.0, "out_bias": -1.0} if bipolar else {"out_dtype": "UINT2"}
    multithreshold("mt1", "a1", "l1", thresholds, "NCHW" if conv else "NC", **attrs)
    features, source = channels, "l1"
    if conv:
        nodes.append(helper.make_node("MaxPool", ["l1"], ["p1"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
        nodes.append(helper.make_node("Flatten", ["p1"], ["f1"], name="flatten", axis=1))
        features, source = channels * 3 * 3, "f1"
    nodes.append(
        helper.make_node("MatMul", [source, constant("w2", rng.integers(-3, 4, (features, 10)))], ["a2"], name="fc2")
    )
    nodes.append(helper.make_node("Mul", ["a2", constant("scale", np.asarray(0.0371))], ["s2"], name="scale"))
    nodes.append(helper.make_node("Add", ["s2", constant("bias", rng.normal(0, 1, (10,)))], ["y"], name="bias"))
    graph = helper.make_graph(
        nodes,
        "finn_style",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)])
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    wrapper = ModelWrapper(model).transform(InferShapes())
    for name in ("w1", "w2"):
        wrapper.set_tensor_datatype(name, DataType["INT3"])
    return wrapper.model


def crafted_cases() -> list[BrevitasCase]:
    """Rounding modes (UP, DOWN, HALF_UP, HALF_DOWN, FLOOR, CEIL) on fixed- and float-scale exports, a signed 1-bit
    output Quant, FINN-style MultiThreshold graphs (dense and conv, multi-level and bipolar)."""
    fixed_w, fixed_a, fixed_u = "Int8WeightPerTensorFixedPoint", "Int8ActPerTensorFixedPoint", "Uint8ActPerTensorFixedPoint"
    float_w, float_a, float_u = "Int8WeightPerTensorFloat", "Int8ActPerTensorFloat", "Uint8ActPerTensorFloat"
    cases = []
    for arch in ("mlp", "cnn"):
        fixed = lambda arch=arch: brevitas_variant(  # noqa: E731
            arch, _quant(fixed_w, 4), _quant(fixed_a, 4), _quant(fixed_u, 4), _quant("Int16Bias", None)
        )
        floating = lambda arch=arch: brevitas_variant(  # noqa: E731
            arch, _quant(float_w, 4), _quant(float_a, 4), _quant(float_u, 4), None
        )
        for mode in ("UP", "DOWN", "HALF_UP", "HALF_DOWN", "CEIL"):
            cases.append(BrevitasCase(f"crafted_{arch}_fixed_{mode.lower()}", fixed, _SHAPES[arch], _set_rounding(mode)))
        cases.append(BrevitasCase(f"crafted_{arch}_float_half_up", floating, _SHAPES[arch], _set_rounding("HALF_UP")))
        cases.append(BrevitasCase(f"crafted_{arch}_fixed_1b_output", fixed, _SHAPES[arch], _one_bit(-1)))
        cases.append(BrevitasCase(f"crafted_{arch}_float_1b_output", floating, _SHAPES[arch], _one_bit(-1)))
    for conv in (False, True):
        for bipolar in (False, True):
            arch = "cnn" if conv else "mlp"
            cases.append(
                BrevitasCase(
                    f"finnstyle_{arch}_{'bipolar' if bipolar else 'levels'}",
                    lambda conv=conv, bipolar=bipolar: finn_style_graph(conv, bipolar),
                    (1, 8, 8) if conv else (16,),
                )
            )
    return cases


# -- layer kinds beyond the MLP/CNN skeleton: transposed convolutions, truncating average pools, residual adds and
# concatenations of differently scaled branches, upsampling, depthwise/grouped and strided/dilated/padded
# convolutions, per-channel activation scales, min/max-initialised and HardTanh quantizers, quantizer chains,
# BatchNorm after a Linear, float heads (Softmax/LogSoftmax), brevitas_examples' MobileNet-v1 and ProxylessNAS
# (residual units with a shared quantizer, a Hadamard classifier) at small widths, FINN's networks with randomized
# BatchNorm statistics, and graphs edited the way other writers lay them out ---------------------------------------


def _randomize_batchnorms(module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics (random weights leave them at the identity), as a trained network has."""
    import torch
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                shape = norm.running_mean.shape
                norm.running_mean.copy_(torch.rand(shape, generator=generator) - 0.5)
                norm.running_var.copy_(0.5 + 1.5 * torch.rand(shape, generator=generator))
                if norm.weight is not None:
                    norm.weight.copy_(0.5 + torch.rand(shape, generator=generator))
                    norm.bias.copy_(torch.rand(shape, generator=generator) - 0.5)


def _scheme(scheme: str, bits: int):
    """(weight, signed activation, unsigned activation, bias) quantizers of a scheme: ``fixed`` (power-of-two
    scales, Int16 biases) or ``float`` (float scales, float biases)."""
    if scheme == "fixed":
        return (
            _quant("Int8WeightPerTensorFixedPoint", bits),
            _quant("Int8ActPerTensorFixedPoint", bits),
            _quant("Uint8ActPerTensorFixedPoint", bits),
            _quant("Int16Bias", None),
        )
    return (
        _quant("Int8WeightPerChannelFloat", bits),
        _quant("Int8ActPerTensorFloat", bits),
        _quant("Uint8ActPerTensorFloat", bits),
        None,
    )


def layer_model(kind: str, scheme: str = "fixed", bits: int = 4, seed: int = 0):
    """A small brevitas model around one layer kind (see ``LAYER_KINDS``)."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    torch.manual_seed(seed)
    weight, act, relu, bias = _scheme(scheme, bits)

    def conv2d(cin, cout, k, **kw):
        return qnn.QuantConv2d(cin, cout, k, weight_quant=weight, bias_quant=bias, **{"bias": True, **kw})

    def linear(cin, cout, **kw):
        return qnn.QuantLinear(cin, cout, weight_quant=weight, bias_quant=bias, **{"bias": True, **kw})

    def quant_in():
        return qnn.QuantIdentity(act_quant=act, return_quant_tensor=True)

    def quant_relu(**kw):
        return qnn.QuantReLU(act_quant=relu, return_quant_tensor=True, **kw)

    def out_quant():
        return qnn.QuantIdentity(act_quant=act, return_quant_tensor=False)

    if kind == "convtranspose2d":  # 2x4x4 -> ConvTranspose 3x3 stride 2 -> 4x8x8
        layers = [
            quant_in(),
            qnn.QuantConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, weight_quant=weight, bias_quant=bias),
            quant_relu(),
            nn.Flatten(),
            linear(4 * 8 * 8, 10),
            out_quant(),
        ]
    elif kind == "convtranspose1d":  # 2x8 -> ConvTranspose1d k4 stride 2 -> 4x18
        layers = [
            quant_in(),
            qnn.QuantConvTranspose1d(2, 4, 4, stride=2, weight_quant=weight, bias_quant=bias),
            quant_relu(),
            nn.Flatten(),
            linear(4 * 18, 10),
            out_quant(),
        ]
    elif kind in ("truncavgpool_round", "truncavgpool_floor"):  # MobileNet's final pool: AveragePool + Trunc
        rounding = "round" if kind.endswith("round") else "floor"
        layers = [
            quant_in(),
            conv2d(1, 4, 3, padding=1),
            quant_relu(),
            qnn.TruncAvgPool2d(2, stride=2, bit_width=bits + 2, float_to_int_impl_type=rounding),
            nn.Flatten(),
            linear(4 * 4 * 4, 10),
            out_quant(),
        ]
    elif kind == "upsample_nearest":
        layers = [
            quant_in(),
            conv2d(1, 3, 3, padding=1),
            quant_relu(),
            _QuantOrFloat(qnn.QuantUpsamplingNearest2d(scale_factor=2), nn.Upsample(scale_factor=2), value=False),
            conv2d(3, 2, 3, stride=2),
            quant_relu(),
            nn.Flatten(),
            linear(2 * 7 * 7, 10),
            out_quant(),
        ]
    elif kind == "depthwise_pointwise":  # a MobileNet-v1 unit: depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU
        layers = [
            quant_in(),
            conv2d(1, 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(4),
            quant_relu(),
            conv2d(4, 4, 3, padding=1, groups=4, bias=False),
            nn.BatchNorm2d(4),
            quant_relu(),
            conv2d(4, 6, 1, bias=False),
            nn.BatchNorm2d(6),
            quant_relu(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            linear(6 * 4 * 4, 10),
            out_quant(),
        ]
    elif kind == "grouped_conv":
        layers = [
            quant_in(),
            conv2d(1, 4, 3, padding=1),
            quant_relu(),
            conv2d(4, 6, 3, groups=2),
            quant_relu(),
            nn.Flatten(),
            linear(6 * 6 * 6, 10),
            out_quant(),
        ]
    elif kind == "stride_dilation_pad":  # stride 2, dilation 2, zero padding 2, no bias; then a reflect-padded conv
        layers = [
            quant_in(),
            conv2d(1, 4, 3, stride=2, padding=2, dilation=2, bias=False),
            quant_relu(),
            conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
            quant_relu(),
            nn.Flatten(),
            linear(4 * 4 * 4, 10, bias=False),
            out_quant(),
        ]
    elif kind == "perchannel_act":  # per-channel activation scales after a conv
        per_channel = relu.let(
            scaling_per_output_channel=True,
            per_channel_broadcastable_shape=(1, 4, 1, 1),
            scaling_stats_permute_dims=(1, 0, 2, 3),
        )
        layers = [
            quant_in(),
            conv2d(1, 4, 3),
            qnn.QuantReLU(act_quant=per_channel, return_quant_tensor=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            linear(4 * 3 * 3, 10),
            out_quant(),
        ]
    elif kind == "minmax_init":  # brevitas's min/max-initialised quantizers and QuantHardTanh
        layers = [
            qnn.QuantIdentity(
                act_quant=_quant("Int8ActPerTensorFloatMinMaxInit", bits, min_val=-2.0, max_val=2.0),
                return_quant_tensor=True,
            ),
            linear(16, 24),
            qnn.QuantReLU(act_quant=_quant("Uint8ActPerTensorFloatMaxInit", bits, max_val=3.0), return_quant_tensor=True),
            linear(24, 12),
            qnn.QuantHardTanh(
                act_quant=_quant("Int8ActPerTensorFloatMinMaxInit", bits, min_val=-1.0, max_val=1.0),
                return_quant_tensor=True,
            ),
            linear(12, 10),
            out_quant(),
        ]
    elif kind == "identity_chain":  # requantization chains: 8 bits -> bits -> 8 bits, signed -> unsigned
        layers = [
            qnn.QuantIdentity(act_quant=act.let(bit_width=8), return_quant_tensor=True),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            qnn.QuantReLU(act_quant=relu.let(bit_width=8), return_quant_tensor=True),
            linear(16, 24),
            qnn.QuantIdentity(act_quant=act.let(bit_width=8), return_quant_tensor=True),
            qnn.QuantReLU(act_quant=relu, return_quant_tensor=True),
            linear(24, 10),
            out_quant(),
        ]
    elif kind == "linear_bn_noact":  # Linear -> BatchNorm1d -> quantizer (no activation), Dropout in eval
        layers = [
            quant_in(),
            linear(16, 24),
            nn.BatchNorm1d(24),
            nn.Dropout(0.5),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            linear(24, 10),
            nn.BatchNorm1d(10),
            out_quant(),
        ]
    elif kind in ("softmax_head", "logsoftmax_head"):  # a float head past the last quantizer
        head = nn.Softmax(dim=-1) if kind == "softmax_head" else nn.LogSoftmax(dim=-1)
        layers = [quant_in(), linear(16, 24), quant_relu(), linear(24, 10), out_quant(), head]
    elif kind == "radioml_1d":  # RadioML-style: Conv1d + BN + ReLU + MaxPool1d twice, then dense
        layers = [
            quant_in(),
            qnn.QuantConv1d(2, 8, 3, padding=1, bias=False, weight_quant=weight),
            nn.BatchNorm1d(8),
            quant_relu(),
            nn.MaxPool1d(2),
            qnn.QuantConv1d(8, 8, 3, padding=1, bias=False, weight_quant=weight),
            nn.BatchNorm1d(8),
            quant_relu(),
            nn.MaxPool1d(2),
            nn.Flatten(),
            linear(8 * 8, 16),
            nn.BatchNorm1d(16),
            quant_relu(),
            linear(16, 10),
        ]
    elif kind == "relu6_leaky":  # plain float activations between quantizers: ReLU6 (Clip), LeakyReLU
        layers = [
            quant_in(),
            conv2d(1, 4, 3, padding=1),
            nn.ReLU6(),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            conv2d(4, 4, 3, padding=1),
            nn.LeakyReLU(0.125),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
            nn.Flatten(),
            linear(4 * 5 * 5, 10),
            out_quant(),
        ]
    elif kind == "global_avgpool":  # a float global average pool feeding a quantized layer (ResNet's head)
        layers = [
            quant_in(),
            conv2d(1, 8, 3, padding=1),
            quant_relu(),
            conv2d(8, 8, 3, stride=2, padding=1),
            quant_relu(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            linear(8, 10),
            out_quant(),
        ]
    elif kind == "upsample_bilinear":
        layers = [
            quant_in(),
            conv2d(1, 3, 3, padding=1),
            quant_relu(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            conv2d(3, 2, 3, stride=2),
            quant_relu(),
            nn.Flatten(),
            linear(2 * 7 * 7, 10),
            out_quant(),
        ]
    elif kind == "w8a16":  # 16-bit activations, 8-bit weights
        wide = act.let(bit_width=16)
        layers = [
            qnn.QuantIdentity(act_quant=wide, return_quant_tensor=True),
            linear(16, 24),
            qnn.QuantReLU(act_quant=relu.let(bit_width=16), return_quant_tensor=True),
            linear(24, 10),
            qnn.QuantIdentity(act_quant=wide, return_quant_tensor=False),
        ]
    elif kind == "replicate_pad":
        layers = [
            quant_in(),
            conv2d(1, 4, 3, padding=1, padding_mode="replicate"),
            quant_relu(),
            conv2d(4, 4, 3, padding=1, padding_mode="circular"),
            quant_relu(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            linear(4 * 4 * 4, 10),
            out_quant(),
        ]
    elif kind == "io_quant":  # quantizers set on the layers themselves (input_quant / output_quant)
        layers = [
            qnn.QuantConv2d(
                1, 4, 3, weight_quant=weight, bias_quant=bias, input_quant=act, output_quant=act, return_quant_tensor=True
            ),
            qnn.QuantReLU(bit_width=bits, return_quant_tensor=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
            qnn.QuantLinear(4 * 3 * 3, 10, bias=True, weight_quant=weight, bias_quant=bias, output_quant=act),
        ]
    elif kind == "fp8":  # FP8 (e4m3) activations and weights: FloatQuant nodes
        fp8_act, fp8_weight = _quant("Fp8e4m3OCPActPerTensorFloat", None), _quant("Fp8e4m3OCPWeightPerTensorFloat", None)
        layers = [
            qnn.QuantIdentity(act_quant=fp8_act, return_quant_tensor=True),
            qnn.QuantLinear(16, 24, bias=True, weight_quant=fp8_weight),
            qnn.QuantReLU(act_quant=fp8_act, return_quant_tensor=True),
            qnn.QuantLinear(24, 10, bias=True, weight_quant=fp8_weight),
            qnn.QuantIdentity(act_quant=fp8_act, return_quant_tensor=False),
        ]
    elif kind == "hadamard":
        # return_quant_tensor=False trips brevitas 0.13's zero-point check (a bool's .any()); the value is taken
        hadamard = qnn.HadamardClassifier(24, 10, return_quant_tensor=True)
        layers = [quant_in(), linear(16, 24), quant_relu(), _QuantOrFloat(hadamard, lambda x: x[:, :10] * 0)]
    else:
        return _branchy_model(kind, weight, act, relu, bias)
    model = nn.Sequential(*layers)
    _randomize_batchnorms(model, seed)
    return model


def _branchy_model(kind: str, weight, act, relu, bias):
    """Models with two branches: a residual add through a shared quantizer (ProxylessNAS's units), an add of two
    differently scaled branches (QuantEltwiseAdd), concatenations (channels, width) of differently scaled branches,
    and a view-flatten."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant_in = qnn.QuantIdentity(act_quant=act, return_quant_tensor=True)
            self.conv1 = qnn.QuantConv2d(1, 4, 3, padding=1, weight_quant=weight, bias_quant=bias)
            self.relu1 = qnn.QuantReLU(act_quant=relu, return_quant_tensor=True)
            self.conv2 = qnn.QuantConv2d(4, 4, 3, padding=1, weight_quant=weight, bias_quant=bias)
            self.shared = qnn.QuantIdentity(act_quant=act, return_quant_tensor=True)
            if kind != "residual_shared":  # an unused layer's integer bias has no input scale to export with
                self.conv3 = qnn.QuantConv2d(4, 4, 1, weight_quant=weight, bias_quant=bias)
                self.other = qnn.QuantIdentity(act_quant=act.let(bit_width=8), return_quant_tensor=True)
            if kind == "eltwise_add":
                self.add = qnn.QuantEltwiseAdd(input_quant=act, output_quant=act, return_quant_tensor=True)
            self.relu2 = qnn.QuantReLU(act_quant=relu, return_quant_tensor=True)
            self.requant = qnn.QuantIdentity(act_quant=act, return_quant_tensor=True)
            width = 8 * 4 * 4 if kind in ("cat_channels", "cat_width") else 4 * 4 * 4
            self.fc = qnn.QuantLinear(width, 10, bias=True, weight_quant=weight, bias_quant=bias)
            self.out = qnn.QuantIdentity(act_quant=act, return_quant_tensor=False)

        def forward(self, x):
            x = self.relu1(self.conv1(self.quant_in(x)))
            if kind == "residual_shared":
                identity = self.shared(x)
                y = self.shared(self.conv2(x))
                x = self.relu2(self.shared(identity + y))
            elif kind == "eltwise_add":
                x = self.relu2(self.add(self.other(self.conv3(x)), self.shared(self.conv2(x))))
            else:
                a, b = self.shared(self.conv2(x)), self.other(self.conv3(x))
                x = self.requant(torch.cat([_value(a), _value(b)], dim=1 if kind == "cat_channels" else 3))
            x = nn.functional.max_pool2d(x, 2)
            return self.out(self.fc(x.view(x.size(0), -1)))

    return Branchy()


def _value(tensor):
    """A brevitas QuantTensor's float value (calibration passes plain tensors)."""
    return getattr(tensor, "value", tensor)


def _QuantOrFloat(quant_module, float_function, value: bool = True):
    """``quant_module`` on a QuantTensor (its float value out with ``value``); ``float_function`` on the plain
    tensors calibration passes (brevitas's upsampling and Hadamard layers need a QuantTensor; calibration only
    needs the float path to reach the quantizers after it)."""
    from torch import nn

    class QuantOrFloat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant = quant_module

        def forward(self, x):
            if not hasattr(x, "value"):
                return float_function(x)
            return _value(self.quant(x)) if value else self.quant(x)

    return QuantOrFloat()


#: (kind, input shape, schemes) of ``layer_model``
LAYER_KINDS = {
    "convtranspose2d": ((2, 4, 4), ("fixed", "float")),
    "convtranspose1d": ((2, 8), ("fixed", "float")),
    "truncavgpool_round": ((1, 8, 8), ("fixed", "float")),
    "truncavgpool_floor": ((1, 8, 8), ("fixed",)),
    "upsample_nearest": ((1, 8, 8), ("fixed", "float")),
    "depthwise_pointwise": ((1, 8, 8), ("fixed", "float")),
    "grouped_conv": ((1, 8, 8), ("fixed", "float")),
    "stride_dilation_pad": ((1, 8, 8), ("fixed", "float")),
    "perchannel_act": ((1, 8, 8), ("float",)),
    "minmax_init": ((16,), ("float",)),
    "identity_chain": ((16,), ("fixed", "float")),
    "linear_bn_noact": ((16,), ("fixed", "float")),
    "softmax_head": ((16,), ("fixed",)),
    "logsoftmax_head": ((16,), ("float",)),
    "radioml_1d": ((2, 32), ("fixed", "float")),
    "relu6_leaky": ((1, 8, 8), ("fixed", "float")),
    "global_avgpool": ((1, 8, 8), ("fixed", "float")),
    "upsample_bilinear": ((1, 8, 8), ("fixed", "float")),
    "w8a16": ((16,), ("fixed8", "float8")),
    "replicate_pad": ((1, 8, 8), ("fixed", "float")),
    "io_quant": ((1, 8, 8), ("fixed", "float")),
    "fp8": ((16,), ("float",)),
    "hadamard": ((16,), ("fixed", "float")),
    "residual_shared": ((1, 8, 8), ("fixed", "float")),
    "eltwise_add": ((1, 8, 8), ("fixed", "float")),
    "cat_channels": ((1, 8, 8), ("fixed", "float")),
    "cat_width": ((1, 8, 8), ("fixed", "float")),
}


def layer_cases() -> list[BrevitasCase]:
    cases = []
    for kind, (shape, schemes) in LAYER_KINDS.items():
        for scheme in schemes:
            if scheme.endswith("8"):  # 8-bit weights
                widths, scheme = (8,), scheme[:-1]
            else:
                widths = (4,) if scheme == "float" else (4, 3)
            for bits in widths:
                build = lambda kind=kind, scheme=scheme, bits=bits: layer_model(kind, scheme, bits)  # noqa: E731
                cases.append(BrevitasCase(f"layer_{kind}_{scheme}_{bits}b", build, shape))
    return cases


def mobilenet_small(bits: int = 4):
    """brevitas_examples' quantized MobileNet-v1 at a small width: 3x16x16 in, stride-2 first conv (8-bit weights,
    per-channel activation scales), depthwise-separable units with per-channel float weight scales, a ROUND
    TruncAvgPool2d, an Int32-bias classifier."""
    from brevitas_examples.imagenet_classification.models.mobilenetv1 import MobileNet

    model = MobileNet(
        channels=[[8], [16], [16, 32]],
        first_stage_stride=False,
        act_bit_width=bits,
        weight_bit_width=bits,
        last_layer_bit_width=bits,
        avg_pool_kernel_size=4,
        num_classes=10,
    )
    _randomize_batchnorms(model)
    return model


def proxylessnas_small(hadamard: bool, bits: int = 4):
    """brevitas_examples' ProxylessNAS at a small width: inverted-residual units whose residual add and the unit
    before it share one quantizer, a TruncAvgPool2d over 7x7, a Hadamard or QuantLinear classifier; 3x28x28 in."""
    from brevitas_examples.imagenet_classification.models.proxylessnas import ProxylessNAS

    model = ProxylessNAS(
        channels=[[8], [16, 16]],
        init_block_channels=8,
        final_block_channels=32,
        residuals=[[1], [1, 1]],
        shortcuts=[[0], [0, 1]],
        kernel_sizes=[[3], [3, 5]],
        expansions=[[1], [3, 3]],
        bit_width=bits,
        depthwise_bit_width=bits,
        first_layer_weight_bit_width=8,
        hadamard_classifier=hadamard,
        num_classes=10,
    )
    if hadamard:  # brevitas 0.13's zero-point check needs return_quant_tensor (see layer_model's "hadamard")
        model.output.return_quant_tensor = True
        model.output = _QuantOrFloat(model.output, lambda x: x[:, :10] * 0)
    _randomize_batchnorms(model)
    return model


def finn_randomized(name: str):
    """A BNN-PYNQ network with random weights and randomized BatchNorm statistics (thresholds off the grid)."""
    from brevitas_examples.bnn_pynq import models

    model = getattr(models, name)(pretrained=False)
    _randomize_batchnorms(model)
    return model


def example_cases() -> list[BrevitasCase]:
    """brevitas_examples' MobileNet-v1 / ProxylessNAS at small widths, FINN's networks with randomized BatchNorm."""
    cases = [
        BrevitasCase("zoo_mobilenet_v1_small_4b", lambda: mobilenet_small(4), (3, 16, 16)),
        BrevitasCase("zoo_proxylessnas_small_linear_4b", lambda: proxylessnas_small(False), (3, 28, 28)),
        BrevitasCase("zoo_proxylessnas_small_hadamard_4b", lambda: proxylessnas_small(True), (3, 28, 28)),
    ]
    for name, shape in (("sfc_2w2a", (1, 28, 28)), ("tfc_1w2a", (1, 28, 28)), ("cnv_1w2a", (3, 32, 32))):
        cases.append(BrevitasCase(f"finn_{name}_bn", lambda name=name: finn_randomized(name), shape))
    return cases


# -- graphs other writers lay out: QKeras through qonnx's converter (channels-last input and Transposes around each
# Conv, separate Quant nodes on weights and biases, MatMul + Add for Dense, per-channel power-of-two "alpha" scales),
# FINN's QONNX (BipolarQuant weights and activations, an average pool as AveragePool -> Mul -> Trunc) -------------


class _GraphBuilder:
    """Initializers and nodes of a hand-written QONNX graph; ``quant`` adds a Quant node with its constants."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def constant(self, stem: str, value, dtype=np.float32) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, domain: str = "", **attrs) -> str:
        from onnx import helper

        name = self.name(stem)
        self.nodes.append(helper.make_node(op, inputs, [f"{name}_out0"], name=name, domain=domain, **attrs))
        return f"{name}_out0"

    def quant(self, source: str, scale, bits: int, signed: bool = True, narrow: bool = False, mode="ROUND") -> str:
        inputs = [source, self.constant("scale", scale), self.constant("zeropt", 0.0), self.constant("bits", bits)]
        return self.node(
            "Quant",
            inputs,
            "Quant",
            domain="qonnx.custom_op.general",
            signed=int(signed),
            narrow=int(narrow),
            rounding_mode=mode,
        )

    def model(self, output: str, in_shape: list[int], name: str) -> onnx.ModelProto:
        from onnx import TensorProto, helper
        from qonnx.core.modelwrapper import ModelWrapper
        from qonnx.transformation.infer_shapes import InferShapes

        self.nodes.append(helper.make_node("Identity", [output], ["global_out"], name="Identity_out"))
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info("global_in", TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info("global_out", TensorProto.FLOAT, None)],
            self.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
        )
        return ModelWrapper(model).transform(InferShapes()).model


def qkeras_style_cnn(bits: int, alpha_per_channel: bool, seed: int = 0) -> onnx.ModelProto:
    """As qonnx's QKeras converter writes a small CNN: an 8x8x2 channels-last input, Quant (quantized_bits), a
    Transpose into NCHW, Conv with Quant weights (per-channel power-of-two alpha, or one scale) and a Quant bias, Relu,
    Quant (quantized_relu), a Transpose back, MaxPool in NHWC through another Transpose pair, a channels-last
    Reshape-flatten, then Dense as MatMul + Add with Quant weights and bias and a Quant output."""
    g = _GraphBuilder(seed)
    channels = 4
    frac = bits - 2
    x = g.quant("global_in", 2.0**-frac, bits)
    x = g.node("Transpose", [x], "Transpose", perm=[0, 3, 1, 2])
    alpha = 2.0 ** g.rng.integers(-1, 2, (channels, 1, 1, 1)) if alpha_per_channel else 1.0
    weight_scale = np.asarray(alpha * 2.0 ** -(bits - 1), dtype=np.float32)
    w = g.quant(g.constant("Quant_param0", g.rng.normal(0, 0.5, (channels, 2, 3, 3))), weight_scale, bits)
    b = g.quant(g.constant("Quant_param0", g.rng.normal(0, 0.5, (channels,))), 2.0 ** -(bits - 1), bits)
    y = g.node("Conv", [x, w, b], "Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    y = g.node("Transpose", [y], "Transpose", perm=[0, 2, 3, 1])
    y = g.node("Relu", [y], "Relu")
    y = g.quant(y, 2.0**-frac, bits, signed=False)
    y = g.node("Transpose", [y], "Transpose", perm=[0, 3, 1, 2])
    y = g.node("MaxPool", [y], "MaxPool", kernel_shape=[2, 2], strides=[2, 2])
    y = g.node("Transpose", [y], "Transpose", perm=[0, 2, 3, 1])
    y = g.node("Reshape", [y, g.constant("shape", [1, 4 * 4 * channels], np.int64)], "Reshape")
    w2 = g.quant(g.constant("Quant_param0", g.rng.normal(0, 0.3, (4 * 4 * channels, 10))), 2.0 ** -(bits - 1), bits)
    b2 = g.quant(g.constant("Quant_param0", g.rng.normal(0, 0.5, (10,))), 2.0 ** -(bits - 1), bits)
    y = g.node("Add", [g.node("MatMul", [y, w2], "MatMul"), b2], "Add")
    y = g.quant(y, 2.0 ** -(bits - 3), bits)
    return g.model(y, [1, 8, 8, 2], "qkeras_style_cnn")


def finn_qonnx_bipolar_mlp(seed: int = 0) -> onnx.ModelProto:
    """FINN's binarized MLP in QONNX form: BipolarQuant on the weights and after each BatchNorm-like Mul/Add, a
    Quant input, MatMul layers, a float scale on the output."""
    g = _GraphBuilder(seed)
    x = g.quant("global_in", 2.0**-4, 8)
    features = 16
    for width in (32, 24):
        w = g.node(
            "BipolarQuant",
            [g.constant("w", g.rng.normal(0, 1, (features, width))), g.constant("scale", 1.0)],
            "BipolarQuant",
            domain="qonnx.custom_op.general",
        )
        y = g.node("MatMul", [x, w], "MatMul")
        y = g.node("Mul", [y, g.constant("bn_mul", g.rng.uniform(0.5, 1.5, (width,)))], "Mul")
        y = g.node("Add", [y, g.constant("bn_add", g.rng.uniform(-2, 2, (width,)))], "Add")
        x = g.node("BipolarQuant", [y, g.constant("scale", 1.0)], "BipolarQuant", domain="qonnx.custom_op.general")
        features = width
    w = g.node(
        "BipolarQuant",
        [g.constant("w", g.rng.normal(0, 1, (features, 10))), g.constant("scale", 1.0)],
        "BipolarQuant",
        domain="qonnx.custom_op.general",
    )
    y = g.node("MatMul", [x, w], "MatMul")
    y = g.node("Mul", [y, g.constant("out_scale", 0.125)], "Mul")
    return g.model(y, [1, 16], "finn_bipolar_mlp")


def finn_qonnx_trunc_pool(rounding: str, seed: int = 0) -> onnx.ModelProto:
    """A FINN-style average pool in QONNX form: Quant input (unsigned 4 bits), Conv with Quant weights, Relu, Quant,
    AveragePool 2x2, Mul by 4 (the sum), Trunc to 6 bits with ``rounding``, Flatten, MatMul, a Quant output."""
    g = _GraphBuilder(seed)
    x = g.quant("global_in", 2.0**-2, 4)
    w = g.quant(g.constant("w", g.rng.normal(0, 0.5, (4, 1, 3, 3))), 2.0**-3, 4)
    y = g.node("Conv", [x, w], "Conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.quant(g.node("Relu", [y], "Relu"), 2.0**-2, 4, signed=False)
    y = g.node("AveragePool", [y], "AveragePool", kernel_shape=[2, 2], strides=[2, 2])
    y = g.node("Mul", [y, g.constant("pool_size", 4.0)], "Mul")
    y = g.node(
        "Trunc",
        [
            y,
            g.constant("scale", 2.0**-2),
            g.constant("zeropt", 0.0),
            g.constant("in_bits", 6.0),
            g.constant("out_bits", 4.0),
        ],
        "Trunc",
        domain="qonnx.custom_op.general",
        rounding_mode=rounding,
    )
    y = g.node("Flatten", [y], "Flatten", axis=1)
    w2 = g.quant(g.constant("w", g.rng.normal(0, 0.3, (64, 10))), 2.0**-3, 4)
    y = g.quant(g.node("MatMul", [y, w2], "MatMul"), 2.0**-1, 6)
    return g.model(y, [1, 1, 8, 8], "finn_trunc_pool")


def _dynamic_batch(model):
    """The input's and output's batch symbolic, as torch's export with ``dynamic_axes`` writes it (the graph's own
    Reshapes keep the exported batch 1)."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    del model.graph.value_info[:]
    return model


def _constants_as_nodes(model):
    """Every initializer as a Constant node (tf2onnx and exports without constant folding write them so)."""
    from onnx import helper

    names = {init.name for init in model.graph.initializer}
    constants = [
        helper.make_node("Constant", [], [init.name], name=f"Const_{index}", value=init)
        for index, init in enumerate(model.graph.initializer)
    ]
    runtime = [value for value in model.graph.input if value.name not in names]
    del model.graph.input[:]
    model.graph.input.extend(runtime)
    del model.graph.initializer[:]
    nodes = constants + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _tensorflow_names(model):
    """Names as tf2onnx writes them: ``serving_default_x:0`` in, ``StatefulPartitionedCall:0`` out, node names with
    slashes (not identifiers: cleanup renumbers them, refusals must still name these)."""
    renamed = {model.graph.input[0].name: "serving_default_x:0", model.graph.output[0].name: "StatefulPartitionedCall:0"}
    for value in [model.graph.input[0], model.graph.output[0], *model.graph.value_info]:
        value.name = renamed.get(value.name, value.name)
    for node in model.graph.node:
        node.name = f"model/{node.name}/{node.op_type}"
        for index, name in enumerate(node.input):
            node.input[index] = renamed.get(name, name)
        for index, name in enumerate(node.output):
            node.output[index] = renamed.get(name, name)
    return model


def writer_cases() -> list[BrevitasCase]:
    """Graphs laid out as QKeras (through qonnx's converter) and FINN write them, and brevitas exports with a
    symbolic batch."""
    cases = [
        BrevitasCase(
            f"writer_dynamic_batch_{kind}",
            lambda kind=kind: layer_model(kind, "fixed", 4),
            LAYER_KINDS[kind][0],
            _dynamic_batch,
        )
        for kind in ("residual_shared", "stride_dilation_pad", "linear_bn_noact")
    ]
    for edit_name, edit in (("constnodes", _constants_as_nodes), ("tfnames", _tensorflow_names)):
        cases += [
            BrevitasCase(
                f"writer_{edit_name}_{kind}", lambda kind=kind: layer_model(kind, "fixed", 4), LAYER_KINDS[kind][0], edit
            )
            for kind in ("residual_shared", "depthwise_pointwise", "identity_chain")
        ]
    cases += [
        BrevitasCase(
            f"writer_qkeras_cnn_{bits}b{'_alpha' if alpha else ''}",
            lambda bits=bits, alpha=alpha: qkeras_style_cnn(bits, alpha),
            (8, 8, 2),
        )
        for bits in (4, 6)
        for alpha in (False, True)
    ]
    cases.append(BrevitasCase("writer_finn_bipolar_mlp", finn_qonnx_bipolar_mlp, (16,)))
    cases += [
        BrevitasCase(f"writer_finn_trunc_pool_{mode.lower()}", lambda mode=mode: finn_qonnx_trunc_pool(mode), (1, 8, 8))
        for mode in ("ROUND", "FLOOR")
    ]
    return cases
