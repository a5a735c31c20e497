"""How each multiply-accumulate layer is implemented in hls4ml: Latency or Resource strategy, and its reuse factor.

hls4ml takes one ``Strategy``/``ReuseFactor`` for the whole model unless told per layer, and no single choice suits a
real network: FINN's CNV has a first conv whose Resource implementation allows a reuse factor of at most 27
(hls4ml #817) and later layers of 36,864 multiplications that Latency cannot unroll (hls4ml #904). So qdeploy decides
per layer (the ``auto`` default):

- Latency (every multiplication in parallel, reuse factor 1) where the layer has at most ``UNROLL_LIMIT``
  multiplications;
- else Resource with the smallest reuse factor that hls4ml accepts for the layer (its ``_validate_reuse_factor``
  rule, mirrored in ``valid_reuse_factors``), that keeps each cycle's multiplications within the unroll limit, and,
  for a convolution, that does not exceed kernel x input channels: above that hls4ml's C simulation computes wrong
  outputs (hls4ml #817, where the maintainers' expected behaviour is "the maximum legal value").

What the user says overrides it, from the least to the most specific: the ``strategy``/``reuse_factor`` options
(``--strategy``, ``--reuse-factor``), hls4ml's own ``Model``, ``LayerType`` and ``LayerName`` sections. A reuse factor
the user asks for is a request, as in hls4ml: a layer gets the valid reuse factor closest to it (within the #817
cap); the report shows both. An explicit Latency strategy on a layer too large to unroll is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from math import ceil
from typing import Any

from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import const_input
from qdeploy.targets.hls4ml.options import Hls4mlOptions, Strategy

log = logging.getLogger(__name__)

UNROLL_LIMIT = 4096  # "Vivado has an unroll limit of 4096 hardcoded" (hls4ml #904)

#: hls4ml layer classes of the ONNX layers whose strategy and reuse factor matter (``LayerType`` section keys)
HLS_LAYER_TYPES = {"MatMul": ("Dense",), "Conv": ("Conv1D", "Conv2D", "DepthwiseConv1D", "DepthwiseConv2D")}


@dataclass(frozen=True)
class LayerImplementation:
    """The implementation chosen for one multiply-accumulate layer (an ONNX MatMul or Conv, named as hls4ml names it).

    ``n_in``/``n_out``: hls4ml's multiplication sizes (inputs per output, outputs per input position);
    ``requested_reuse_factor``: what the user asked for, if anything; ``decided_by``: ``auto``, ``options`` or the
    hls4ml section (``Model``, ``LayerType``, ``LayerName``) that set the strategy."""

    node: str
    op: str
    n_in: int
    n_out: int
    strategy: Strategy
    reuse_factor: int
    decided_by: str
    requested_reuse_factor: int | None = None

    @property
    def multiplications(self) -> int:
        return self.n_in * self.n_out

    @property
    def parallel_multiplications(self) -> int:
        """Multiplications per cycle (hls4ml's ``block_factor``): what the HLS tool must unroll."""
        return ceil(self.multiplications / self.reuse_factor)

    def as_report(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "strategy": self.strategy.value,
            "reuse_factor": self.reuse_factor,
            "parallel_multiplications": self.parallel_multiplications,
            "decided_by": self.decided_by,
        }
        if self.requested_reuse_factor is not None and self.requested_reuse_factor != self.reuse_factor:
            row["requested_reuse_factor"] = self.requested_reuse_factor
        return row


def is_valid_reuse_factor(n_in: int, n_out: int, reuse: int) -> bool:
    """hls4ml's own rule (``FPGABackend._validate_reuse_factor``): the Resource dense kernel is functionally correct
    only for these reuse factors; hls4ml silently replaces any other by the closest valid one."""
    total = n_in * n_out
    if total % reuse:
        return False
    multiplier_limit = ceil(total / min(n_in, reuse))
    return (multiplier_limit % n_out == 0 or reuse >= n_in) and (reuse % n_in == 0 or reuse < n_in)


def valid_reuse_factors(n_in: int, n_out: int, cap: int | None = None) -> list[int]:
    """Every reuse factor hls4ml accepts for an ``n_in`` x ``n_out`` multiplication, at most ``cap``, ascending."""
    total = n_in * n_out
    limit = min(total, cap) if cap is not None else total
    divisors = sorted({d for i in range(1, int(total**0.5) + 1) if total % i == 0 for d in (i, total // i)})
    return [r for r in divisors if r <= limit and is_valid_reuse_factor(n_in, n_out, r)]


def multiplication_size(model: ModelWrapper, node) -> tuple[int, int, int | None]:
    """hls4ml's ``get_layer_mult_size`` of an ONNX MatMul/Conv: (inputs per output, outputs, #817 reuse cap)."""
    weights = const_input(model, node, 1)
    if weights is None:
        raise UnsupportedModelError(f"node {node.name}: {node.op_type} needs constant weights on this target")
    if node.op_type == "MatMul":
        return int(weights.shape[0]), int(weights.shape[1]), None
    # ONNX Conv weights [filters, channels, *kernel]: hls4ml multiplies kernel x channels inputs per filter
    per_output = int(weights[0].size)
    return per_output, int(weights.shape[0]), per_output


def _user_settings(options: Hls4mlOptions, node, hls_types: tuple[str, ...]) -> tuple[Any, Any, str]:
    """The strategy and reuse factor the user set for ``node`` (None where unset), with the most specific source."""
    strategy = None if options.strategy is Strategy.AUTO else options.strategy
    reuse = options.reuse_factor
    source = "options" if (strategy is not None or reuse is not None) else "auto"
    sections = options.hls_config
    layer_type_sections = sections.get("LayerType", {}) or {}
    candidates = [("Model", sections.get("Model", {}) or {})]
    candidates += [("LayerType", layer_type_sections.get(kind, {}) or {}) for kind in hls_types]
    candidates += [("LayerName", (sections.get("LayerName", {}) or {}).get(node.name, {}) or {})]
    for name, section in candidates:
        if section.get("Strategy") is not None:
            strategy, source = section["Strategy"], name
        if section.get("ReuseFactor") is not None:
            reuse, source = section["ReuseFactor"], name
    if strategy is not None and not isinstance(strategy, Strategy):
        try:
            strategy = Strategy(str(strategy).capitalize())
        except ValueError:
            raise UnsupportedModelError(
                f"node {node.name}: Strategy {strategy!r} is not one qdeploy verifies (Latency, Resource)"
            ) from None
    if reuse is not None and (not isinstance(reuse, int) or reuse < 1):
        raise UnsupportedModelError(f"node {node.name}: ReuseFactor {reuse!r} must be an integer >= 1")
    return strategy, reuse, source


def _closest(valid: list[int], requested: int) -> int:
    """hls4ml's ``get_closest_reuse_factor``: the nearest valid value, the smaller one on a tie."""
    return min(valid, key=lambda r: (abs(r - requested), r))


def choose_layer(model: ModelWrapper, node, options: Hls4mlOptions) -> LayerImplementation:
    """The implementation of one MatMul/Conv node (see the module docstring for the rules)."""
    n_in, n_out, cap = multiplication_size(model, node)
    strategy, requested, source = _user_settings(options, node, HLS_LAYER_TYPES[node.op_type])
    total = n_in * n_out
    if strategy is None:  # auto
        fits = total <= UNROLL_LIMIT and (requested is None or requested == 1)
        strategy = Strategy.LATENCY if fits else Strategy.RESOURCE
    if strategy is Strategy.LATENCY:
        reuse = requested or 1
        if ceil(total / reuse) > UNROLL_LIMIT:
            needed = ceil(total / UNROLL_LIMIT)
            raise UnsupportedModelError(
                f"node {node.name}: {total:,} multiplications / reuse factor {reuse} exceed the {UNROLL_LIMIT:,} a "
                f"Latency-strategy layer can unroll; leave --strategy at auto, or use --strategy Resource "
                f"--reuse-factor {needed} (or larger)"
            )
        return LayerImplementation(node.name, node.op_type, n_in, n_out, strategy, reuse, source, requested)
    valid = valid_reuse_factors(n_in, n_out, cap)
    if requested is not None:
        reuse = _closest(valid, requested)
        if reuse != requested:
            log.info(
                "node %s: reuse factor %d is not valid here; using %d (valid: %s)",
                node.name,
                requested,
                reuse,
                ", ".join(map(str, valid[:12])),
            )
    else:
        reuse = next((r for r in valid if ceil(total / r) <= UNROLL_LIMIT), valid[-1])
    return LayerImplementation(node.name, node.op_type, n_in, n_out, strategy, reuse, source, requested)


def choose_implementations(model: ModelWrapper, options: Hls4mlOptions) -> dict[str, LayerImplementation]:
    """The implementation of every MatMul/Conv node of a prepared graph, by node name."""
    return {
        node.name: choose_layer(model, node, options)
        for node in model.graph.node
        if node.op_type in HLS_LAYER_TYPES and const_input(model, node, 1) is not None
    }
