"""The corpus of models nobody on the team wrote: the public QONNX files in ``../shared/fixtures`` and raw brevitas
exports (every quantizer family, brevitas's own defaults: float biases, no output quantizer) and FINN's BNN-PYNQ
networks with random weights. Shared by ``tests/targets/test_wild.py`` and ``benchmarks/wild.py``.

Each generated model is described by a ``BrevitasCase`` (a name and how to build the module), so a test can export
a handful and the benchmark all of them, with the same names in both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures"
FIXTURE_FOLDERS = ("wild", "qonnx")
FIXTURES_MISSING = f"QONNX fixture folders not found under {FIXTURES} (they ship beside the repository)"


def fixture_files() -> list[Path]:
    """Every ``.onnx`` file of the wild and model-zoo fixture folders (empty when the folders are missing)."""
    return sorted(path for folder in FIXTURE_FOLDERS for path in (FIXTURES / folder).glob("*.onnx"))


@dataclass(frozen=True)
class BrevitasCase:
    """A brevitas model to export raw: ``build()`` returns the module, ``input_shape`` its input without the batch."""

    name: str
    build: Callable[[], object]
    input_shape: tuple[int, ...]


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
    generator = torch.Generator().manual_seed(seed)
    calibration = torch.randn((64, *case.input_shape), generator=generator)
    model.eval()
    with torch.no_grad(), calibration_mode(model):
        model(calibration)
    model.eval()
    path = Path(folder) / f"{case.name}.onnx"
    with torch.no_grad():
        export_qonnx(model, calibration[:1], export_path=str(path), dynamo=False)
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
    path: Path, out: Path, samples: int, target: str = "onnxruntime", input_quant: str | None = None
) -> dict:
    """Compile ``path`` and classify the outcome as the contract names them: ``exact``, ``bounded`` (verified within
    the derived bound), ``refused`` (a QDeployError before anything was written), ``NOT EXACT`` (compiled, outputs
    outside the bound) or ``internal error`` (any other exception, or a refusal that left files behind).
    ``input_quant``: a declared input precision (``--input-quant``), recorded in the row."""
    import time

    import qdeploy
    from qdeploy.errors import QDeployError

    start = time.perf_counter()
    row: dict = {"model": path.name, "target": target, "verify_samples": samples, "input_quant": input_quant}
    declared = {"input_quant": input_quant} if input_quant else {}
    try:
        artifact = qdeploy.compile(path, target=target, out=out, verify_samples=samples, **declared)
    except QDeployError as exc:
        left_behind = out.exists() or any(out.parent.glob(f".{out.name}.*"))
        row["outcome"] = "internal error" if left_behind else "refused"
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
