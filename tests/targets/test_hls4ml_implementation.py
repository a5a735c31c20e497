"""Per-layer implementation choice (strategy and reuse factor) and board fit, without building any firmware."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import UnsupportedModelError
from qdeploy.targets.hls4ml.boards import BOARDS
from qdeploy.targets.hls4ml.implementation import (
    UNROLL_LIMIT,
    choose_implementations,
    is_valid_reuse_factor,
    valid_reuse_factors,
)
from qdeploy.targets.hls4ml.options import Hls4mlOptions, Strategy
from qdeploy.targets.hls4ml.resources import board_fit, describe_overfit


def _graph(*layers: tuple[str, tuple[int, ...]]) -> ModelWrapper:
    """A chain of MatMul ([in, out] weights) and Conv ([filters, channels, k, k] weights) nodes with constant weights."""
    nodes, initializers, tensor = [], [], "x"
    for index, (op, shape) in enumerate(layers):
        weight = f"w{index}"
        initializers.append(helper.make_tensor(weight, TensorProto.FLOAT, shape, np.ones(shape).ravel().tolist()))
        nodes.append(helper.make_node(op, [tensor, weight], [f"y{index}"], name=f"{op}_{index}"))
        tensor = f"y{index}"
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None)],
        initializers,
    )
    return ModelWrapper(helper.make_model(graph))


@pytest.mark.parametrize(("n_in", "n_out"), [(784, 64), (27, 64), (576, 64), (64, 10), (1152, 256), (7, 3)])
def test_valid_reuse_factors_match_hls4ml(n_in, n_out):
    """The mirrored rule agrees with hls4ml's own get_valid_reuse_factors (which it applies silently)."""
    hls4ml = pytest.importorskip("hls4ml")
    backend = hls4ml.backends.get_backend("Vitis")
    assert valid_reuse_factors(n_in, n_out) == backend.get_valid_reuse_factors(n_in, n_out)


def test_auto_picks_latency_where_it_unrolls_else_the_smallest_valid_resource_reuse_factor():
    implementations = choose_implementations(_graph(("MatMul", (784, 64)), ("MatMul", (64, 64))), Hls4mlOptions())
    big, small = implementations["MatMul_0"], implementations["MatMul_1"]
    assert (small.strategy, small.reuse_factor, small.decided_by) == (Strategy.LATENCY, 1, "auto")
    assert big.strategy is Strategy.RESOURCE and big.parallel_multiplications <= UNROLL_LIMIT
    smaller = [r for r in valid_reuse_factors(784, 64) if r < big.reuse_factor]
    assert all(784 * 64 / r > UNROLL_LIMIT for r in smaller)  # none smaller would unroll
    assert big.reuse_factor == 14


def test_conv_reuse_factor_stays_within_kernel_times_channels():
    """hls4ml #817: a Resource conv computes wrongly above kernel x input channels (here 3 x 3 x 3 = 27)."""
    conv = choose_implementations(_graph(("Conv", (512, 3, 3, 3))), Hls4mlOptions())["Conv_0"]
    assert conv.strategy is Strategy.RESOURCE and conv.reuse_factor <= 27
    assert is_valid_reuse_factor(27, 512, conv.reuse_factor)
    requested = choose_implementations(_graph(("Conv", (512, 3, 3, 3))), Hls4mlOptions(reuse_factor=64))["Conv_0"]
    assert requested.reuse_factor == 27 and requested.as_report()["requested_reuse_factor"] == 64


def test_hls4ml_sections_override_options_per_layer():
    options = Hls4mlOptions(
        strategy="Resource",
        hls_config={
            "LayerType": {"Dense": {"ReuseFactor": 8}},
            "LayerName": {"MatMul_1": {"Strategy": "Latency", "ReuseFactor": 1}},
        },
    )
    implementations = choose_implementations(_graph(("MatMul", (64, 64)), ("MatMul", (64, 10))), options)
    first, second = implementations["MatMul_0"], implementations["MatMul_1"]
    assert (first.strategy, first.reuse_factor, first.decided_by) == (Strategy.RESOURCE, 8, "LayerType")
    assert (second.strategy, second.reuse_factor, second.decided_by) == (Strategy.LATENCY, 1, "LayerName")


def test_explicit_latency_on_a_layer_too_large_to_unroll_is_refused():
    graph = _graph(("MatMul", (784, 64)))
    with pytest.raises(UnsupportedModelError, match=r"node MatMul_0: 50,176 multiplications .* --reuse-factor 13"):
        choose_implementations(graph, Hls4mlOptions(strategy="Latency"))
    with pytest.raises(UnsupportedModelError, match=r"node MatMul_0: Strategy 'Unrolled' is not one qdeploy verifies"):
        choose_implementations(graph, Hls4mlOptions(hls_config={"LayerName": {"MatMul_0": {"Strategy": "Unrolled"}}}))


def test_board_fit_names_the_costliest_layers():
    rows = [
        {"name": "a", "estimated_resources": {"LUT": 50_000, "FF": 10, "DSP": 0, "BRAM_18K": 0}},
        {"name": "b", "estimated_resources": {"LUT": 9_000, "FF": 10, "DSP": 300, "BRAM_18K": 0}},
        {"name": "c", "estimated_resources": {"LUT": 1_000, "FF": 10, "DSP": 0, "BRAM_18K": 0}},
    ]
    fit = board_fit(rows, BOARDS["pynq-z2"].capacity)
    assert not fit["fits"] and set(fit["over"]) == {"LUT", "DSP"}
    assert [entry["layer"] for entry in fit["over"]["LUT"]] == ["a", "b", "c"]
    assert fit["utilization"]["LUT"] == round(60_000 / 53_200, 4)
    assert describe_overfit(fit, "pynq-z2") == (
        "estimated resources exceed pynq-z2: LUT 60,000 of 53,200 (most: a (50,000), b (9,000), c (1,000)); "
        "DSP 300 of 220 (most: b (300))"
    )
    assert board_fit(rows, BOARDS["vu13p"].capacity)["fits"]


def test_every_board_has_a_capacity():
    assert all(set(board.capacity) == {"LUT", "FF", "DSP", "BRAM_18K"} for board in BOARDS.values())
