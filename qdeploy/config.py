"""Configuration as data: frozen dataclasses that load from TOML/YAML/JSON mappings and reject unknown keys."""

from __future__ import annotations

import dataclasses
import enum
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from qdeploy.errors import QDeployError

C = TypeVar("C")


class ScaleKind(enum.StrEnum):
    PO2 = "po2"  # power-of-two scales: plain fixed-point types on FPGA targets
    FLOAT = "float"  # unconstrained float scales (brevitas's default)


class WeightRounding(enum.StrEnum):
    RTN = "rtn"  # round to nearest
    GPTQ = "gptq"
    GPFQ = "gpfq"  # greedy path following (Zhang & Saab)
    ADAROUND = "adaround"  # learned up/down rounding, layer by layer (Nagel et al.)


class Method(enum.StrEnum):
    CUSTOM = "custom"  # the pipeline the options describe
    AUTO = "auto"  # qdeploy picks the pipeline for the bit widths (qdeploy.passes.ptq.auto)


class AutoObjective(enum.StrEnum):
    KL = "kl"  # classifiers: KL divergence of the softmax outputs from the float model's
    MSE = "mse"  # regression or any other output: mean squared difference from the float model's outputs


class GPFQAlphabet(enum.StrEnum):
    INT = "int"  # the weight_bits integer grid
    TERNARY = "ternary"  # {-a, 0, +a} per channel
    BINARY = "binary"  # {-a, +a} per channel


class Calibration(enum.StrEnum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"  # scales minimizing the quantization MSE (weights and activations), brevitas's MSE search


@dataclasses.dataclass(frozen=True)
class QuantizeConfig:
    """Post-training quantization settings (brevitas underneath)."""

    weight_bits: int = 4
    act_bits: int = 8
    per_channel: bool = True  #: weights per output channel (activations are always per tensor)
    scale: ScaleKind = ScaleKind.PO2  #: po2 by default: FPGA targets need power-of-two scales to be exact
    calibration: Calibration = Calibration.MINMAX
    percentile: float = 99.99  #: upper percentile for activation ranges with calibration=percentile
    batch_size: int = 256  #: calibration batch size
    equalize: bool = False  #: cross-layer equalization (+ bias absorption) before quantizing (brevitas EqualizeGraph)
    bias_correction: bool = False  #: empirical bias correction on the calibration data (brevitas)
    rounding: WeightRounding = WeightRounding.RTN  #: nearest, or GPTQ / GPFQ / AdaRound on the calibration data
    gpfq_alphabet: GPFQAlphabet = GPFQAlphabet.INT  #: GPFQ weight alphabet (binary/ternary: per-channel step)
    gpfq_sparsity: float = 0.0  #: GPFQ L1 strength (0: plain GPFQ); ~1 moves a typical weight one step towards 0
    adaround_iters: int = 500  #: AdaRound optimizer steps per layer
    seed: int = 0  #: AdaRound mini-batches, GPFQ row subsets, auto's held-out split
    method: Method = Method.CUSTOM  #: auto: pick the pipeline (rounding, range setting, CLE, bias corr.) itself
    #: how auto compares a candidate with the float model on held-out samples (kl assumes logits of a classifier)
    auto_objective: AutoObjective = AutoObjective.KL
    trainable_scales: bool = False  #: weight scales as parameters (learned by QAT) instead of following the weights
    #: input quantizer: None -> unsigned when no calibration input is negative (twice the levels), else signed
    unsigned_input: bool | None = None
    #: bits of the quantizer behind the last layer: None -> max(act_bits, 8), so logits do not tie on a coarse grid
    output_bits: int | None = None
    #: per-layer weight bit widths by module name (mixed precision, e.g. from qdeploy.passes.mixed); others: weight_bits
    layer_weight_bits: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        checks = [("weight_bits", self.weight_bits), ("act_bits", self.act_bits)]
        checks += [(f"layer_weight_bits[{name!r}]", bits) for name, bits in self.layer_weight_bits.items()]
        checks += [("output_bits", self.output_bits)] if self.output_bits is not None else []
        for name, bits in checks:
            if not isinstance(bits, int) or not 2 <= bits <= 8:
                raise QDeployError(f"{name}={bits!r} is out of range; choose an integer from 2 to 8")
        if not 50.0 < self.percentile <= 100.0:
            raise QDeployError(f"percentile={self.percentile} is out of range; choose a value in (50, 100]")
        object.__setattr__(self, "scale", _enum(ScaleKind, self.scale, "scale"))
        object.__setattr__(self, "calibration", _enum(Calibration, self.calibration, "calibration"))
        object.__setattr__(self, "rounding", _enum(WeightRounding, self.rounding, "rounding"))
        object.__setattr__(self, "gpfq_alphabet", _enum(GPFQAlphabet, self.gpfq_alphabet, "gpfq_alphabet"))
        object.__setattr__(self, "method", _enum(Method, self.method, "method"))
        object.__setattr__(self, "auto_objective", _enum(AutoObjective, self.auto_objective, "auto_objective"))
        if not self.gpfq_sparsity >= 0:
            raise QDeployError(f"gpfq_sparsity={self.gpfq_sparsity} must be >= 0")
        gpfq_variant = self.gpfq_alphabet is not GPFQAlphabet.INT or self.gpfq_sparsity > 0
        if gpfq_variant and self.rounding is not WeightRounding.GPFQ:
            raise QDeployError("gpfq_alphabet/gpfq_sparsity apply to rounding='gpfq' only; set rounding='gpfq'")
        if self.auto_objective is not AutoObjective.KL and self.method is not Method.AUTO:
            raise QDeployError("auto_objective applies to method='auto' only; set method='auto'")
        if not isinstance(self.adaround_iters, int) or self.adaround_iters < 1:
            raise QDeployError(f"adaround_iters={self.adaround_iters!r} must be a positive integer")


class IOType(enum.StrEnum):
    PARALLEL = "io_parallel"
    STREAM = "io_stream"


class Strategy(enum.StrEnum):
    LATENCY = "Latency"
    RESOURCE = "Resource"


@dataclasses.dataclass(frozen=True)
class CompileConfig:
    """Settings of one compile. ``hls4ml`` passes through in hls4ml's own vocabulary (Model/LayerType/LayerName)."""

    target: str = "onnxruntime"
    board: str | None = None  #: FPGA board preset (hls4ml target); see ``qdeploy.targets.hls4ml.boards``
    backend: str = "Vitis"  #: hls4ml backend whose C simulation verifies the firmware
    io_type: IOType = IOType.PARALLEL
    strategy: Strategy = Strategy.LATENCY
    reuse_factor: int = 1
    clock_period_ns: float | None = None  #: overrides the board preset's clock
    verify_samples: int = 1000  #: random inputs added to the user's data for verification
    seed: int = 0
    hls4ml: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: quantum target settings (device, seeds, epsilon, ...); see ``qdeploy.targets.quantum.options``
    quantum: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "io_type", _enum(IOType, self.io_type, "io_type"))
        object.__setattr__(self, "strategy", _enum(Strategy, self.strategy, "strategy"))
        if self.reuse_factor < 1:
            raise QDeployError(f"reuse_factor={self.reuse_factor} must be >= 1")
        if self.verify_samples < 0:
            raise QDeployError(f"verify_samples={self.verify_samples} must be >= 0")


def _enum(kind: type[enum.Enum], value: Any, field: str) -> enum.Enum:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in kind)
        raise QDeployError(f"{field}={value!r} is not valid; choose one of: {choices}") from None


def from_mapping(cls: type[C], data: Mapping[str, Any], source: str = "config") -> C:
    """Build ``cls`` from a mapping, rejecting keys that are not fields (a typo must not pass silently)."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - fields)
    if unknown:
        raise QDeployError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    return cls(**dict(data))


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML, YAML or JSON file into a dict."""
    path = Path(path)
    if not path.exists():
        raise QDeployError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yml", ".yaml"):
            import yaml

            return yaml.safe_load(text) or {}
        if path.suffix == ".json":
            return json.loads(text)
    except Exception as exc:
        raise QDeployError(f"config file {path} could not be parsed: {exc}") from exc
    raise QDeployError(f"config file {path}: use .toml, .yaml or .json")


def to_jsonable(config: Any) -> dict[str, Any]:
    """A resolved config as plain JSON data (enums by value)."""

    def convert(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, Mapping):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return convert(dataclasses.asdict(config))
