"""Configuration as data: frozen dataclasses (``qdeploy.options``) that load from TOML/YAML/JSON mappings and
reject unknown keys. ``QuantizeConfig`` (post-training quantization) and ``CompileConfig`` (the target-neutral
settings of a compile; each target owns its options table)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from qdeploy.errors import QDeployError
from qdeploy.options import Options, field_names, from_mapping, option

#: the target ``qdeploy compile`` uses when none is named
DEFAULT_TARGET = "onnxruntime"


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


class QATOptimizer(enum.StrEnum):
    """The optimizers QAT trains with (``qdeploy qat --optimizer``)."""

    ADAMW = "adamw"  # torch's AdamW, 32-bit states
    ADAMW4BIT = "adamw4bit"  # qdeploy.passes.optim.AdamW4bit: 4-bit states


class BinarizeMethod(enum.StrEnum):
    """How ``qdeploy binarize`` trains binary layers."""

    BIPER = "biper"  # periodic sign(sin(omega w)) weights (BiPer, CVPR 2024)
    STE = "ste"  # sign with a straight-through estimator (BinaryConnect / XNOR-Net)


class BudgetObjective(enum.StrEnum):
    """What a mixed-precision budget counts (``qdeploy mixed --objective``)."""

    BOPS = "bops"  # bit operations: MACs x weight bits x activation bits
    MEMORY = "memory"  # weight storage bits


class Calibration(enum.StrEnum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"  # scales minimizing the quantization MSE (weights and activations), brevitas's MSE search


@dataclasses.dataclass(frozen=True)
class QuantizeConfig(Options):
    """Post-training quantization settings (brevitas underneath). Each field's help is its ``qdeploy quantize`` flag's
    help too (``--wbits``/``--abits`` are shared by every command that starts from a PyTorch model)."""

    weight_bits: int = option(4, "weight bit width, 2-8", flag="--wbits")
    act_bits: int = option(8, "activation bit width, 2-8", flag="--abits")
    per_channel: bool = option(
        True, "one weight scale per tensor (default: per output channel)", flag="--per-tensor", const=False
    )
    #: po2 by default: FPGA targets need power-of-two scales to be exact
    scale: ScaleKind = option(ScaleKind.PO2, "scale kind (po2: plain fixed-point types on FPGA)")
    calibration: Calibration = option(
        Calibration.MINMAX, "activation range setting: min-max, a percentile, or MSE-optimal scales"
    )
    percentile: float = option(99.99, "upper percentile of the activation ranges with --calibration percentile")
    batch_size: int = option(256, "calibration batch size", cli=False)
    equalize: bool = option(False, "cross-layer equalization (+ bias absorption, brevitas) before quantizing")
    bias_correction: bool = option(False, "empirical bias correction on the calibration data (brevitas)")
    rounding: WeightRounding = option(
        WeightRounding.RTN, "weight rounding: nearest, or GPTQ, GPFQ or AdaRound on the calibration data"
    )
    gpfq_alphabet: GPFQAlphabet = option(GPFQAlphabet.INT, "GPFQ weight alphabet (ternary/binary: a per-channel step)")
    gpfq_sparsity: float = option(
        0.0, "GPFQ L1 strength, the sparsity-promoting variant (~1 moves a typical weight one step towards 0)"
    )
    adaround_iters: int = option(500, "AdaRound optimizer steps per layer", cli=False)
    seed: int = option(0, "AdaRound mini-batches, GPFQ row subsets, auto's held-out split", cli=False)
    method: Method = option(
        Method.CUSTOM, "auto: try candidate pipelines for the bit widths and keep the best on held-out calibration data"
    )
    auto_objective: AutoObjective = option(
        AutoObjective.KL,
        "how auto compares candidates with the float model: kl (softmax of a classifier's logits) or mse (regression)",
    )
    trainable_scales: bool = option(
        False, "weight scales as parameters (learned by QAT) instead of following the weights", cli=False
    )
    #: None: unsigned when no calibration input is negative (twice the levels), else signed
    unsigned_input: bool | None = option(
        None,
        "keep the input quantizer signed (default: unsigned when no calibration input is negative)",
        flag="--signed-input",
        const=False,
    )
    #: None: max(act_bits, 8), so logits do not tie on a coarse grid
    output_bits: int | None = option(
        None, "bits of the quantizer behind the last layer (default: max(--abits, 8), so logits do not tie)"
    )
    layer_weight_bits: Mapping[str, int] = option(
        default_factory=dict,
        help="weight bit widths by module name (mixed precision, e.g. from qdeploy.passes.mixed); others: weight_bits",
        cli=False,
    )

    def __post_init__(self) -> None:
        super().__post_init__()  # enum fields given as strings
        checks = [("weight_bits", self.weight_bits), ("act_bits", self.act_bits)]
        checks += [(f"layer_weight_bits[{name!r}]", bits) for name, bits in self.layer_weight_bits.items()]
        checks += [("output_bits", self.output_bits)] if self.output_bits is not None else []
        for name, bits in checks:
            if not isinstance(bits, int) or not 2 <= bits <= 8:
                raise QDeployError(f"{name}={bits!r} is out of range; choose an integer from 2 to 8")
        if not 50.0 < self.percentile <= 100.0:
            raise QDeployError(f"percentile={self.percentile} is out of range; choose a value in (50, 100]")
        if not self.gpfq_sparsity >= 0:
            raise QDeployError(f"gpfq_sparsity={self.gpfq_sparsity} must be >= 0")
        gpfq_variant = self.gpfq_alphabet is not GPFQAlphabet.INT or self.gpfq_sparsity > 0
        if gpfq_variant and self.rounding is not WeightRounding.GPFQ:
            raise QDeployError("gpfq_alphabet/gpfq_sparsity apply to rounding='gpfq' only; set rounding='gpfq'")
        if self.auto_objective is not AutoObjective.KL and self.method is not Method.AUTO:
            raise QDeployError("auto_objective applies to method='auto' only; set method='auto'")
        if not isinstance(self.adaround_iters, int) or self.adaround_iters < 1:
            raise QDeployError(f"adaround_iters={self.adaround_iters!r} must be a positive integer")


@dataclasses.dataclass(frozen=True)
class CompileConfig(Options):
    """Settings of one compile: the target-neutral keys, and one options table per target (``[hls4ml]``,
    ``[quantum]``, ``[<plugin>]``) that the named target validates itself (``Target.options``)."""

    target: str = option(DEFAULT_TARGET, "target to compile for (qdeploy list shows the registered ones)")
    verify_samples: int = option(1000, "random verification inputs added to --data", flag="--samples")
    seed: int = option(0, "seed of the random verification inputs")
    #: declared precision of a float graph input (qdeploy.input_quant): added to the reference graph as a Quant
    input_quant: str | None = option(
        None,
        "declare the precision of a float graph input, e.g. 'fixed<16,6>', 'ufixed<8,0,RND_CONV>', 'int8': an input "
        "quantizer is added to the reference graph (golden.onnx) and the report says so",
    )
    #: options tables by target name, as given (validated by each target when the config is resolved)
    targets: Mapping[str, Mapping[str, Any]] = option(default_factory=dict, cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.verify_samples, int) or self.verify_samples < 0:
            raise QDeployError(f"verify_samples={self.verify_samples!r} must be an integer >= 0")
        if self.input_quant is not None:
            from qdeploy.input_quant import parse_input_quant

            parse_input_quant(self.input_quant)

    def options_for(self, target: str) -> Mapping[str, Any]:
        """The options table of ``target`` (empty when the config has none)."""
        return self.targets.get(target, {})


def compile_config(data: Mapping[str, Any], source: str = "config") -> CompileConfig:
    """Resolve a compile mapping (config file, keyword arguments, flags): target-neutral keys, tables named after
    registered targets, and -- for convenience, as ``qdeploy.compile(..., board="pynq-z2")`` -- keys of the selected
    target's own options. Every table is validated by its target, so a typo anywhere is refused here."""
    from qdeploy.target import available_targets, get_target

    neutral_keys = field_names(CompileConfig) - {"targets"}
    neutral = {k: v for k, v in data.items() if k in neutral_keys}
    selected = str(neutral.get("target", DEFAULT_TARGET))
    registered = available_targets()
    tables: dict[str, dict[str, Any]] = {name: dict(table) for name, table in dict(data.get("targets") or {}).items()}
    own_keys = field_names(get_target(selected).Options)  # an unknown target is refused here, listing the known
    flat = {}
    for key, value in data.items():
        if key in neutral_keys or key == "targets":
            continue
        if key in registered and isinstance(value, Mapping):
            tables[key] = {**tables.get(key, {}), **value}
        elif key in own_keys:
            flat[key] = value
        else:
            raise QDeployError(
                f"{source}: unknown key {key!r}; valid keys: {sorted(neutral_keys)}, a table per target "
                f"({', '.join(sorted(registered))}), or options of target {selected!r}: {sorted(own_keys)}"
            )
    if flat:  # a key in the target's own table wins over the same key given flat
        tables[selected] = {**flat, **tables.get(selected, {})}
    for name, table in tables.items():
        get_target(name).options(table)  # refuses an unknown target, or unknown or invalid keys, naming the table
    return from_mapping(CompileConfig, {**neutral, "targets": tables}, source)
