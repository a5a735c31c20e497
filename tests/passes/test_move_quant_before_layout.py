"""MoveQuantBeforeLayout: golden output unchanged; no Quant reads a layout op's output afterwards."""

from __future__ import annotations

import numpy as np

import qdeploy
from qdeploy.passes.graph.move_quant_before_layout import LAYOUT_OPS, MoveQuantBeforeLayout


def _quants_after_layout(graph) -> list[str]:
    return [
        n.name
        for n in graph.graph.node
        if n.op_type == "Quant" and (p := graph.find_producer(n.input[0])) is not None and p.op_type in LAYOUT_OPS
    ]


def test_quant_moves_above_flatten_with_identical_outputs(float_cnn, data):
    from benchmarks.anchors import brevitas_ptq

    # brevitas's own flow requantizes behind nn.Flatten (qdeploy.quantize does not: passes/ptq/flatten_function.py)
    graph = qdeploy.export(brevitas_ptq(float_cnn, data.x_train[:256], 4, 8), data.x_train[:1])
    assert _quants_after_layout(graph), "brevitas CNN export has Flatten -> Quant"
    moved = graph.transform(MoveQuantBeforeLayout())
    assert not _quants_after_layout(moved)
    assert len(moved.graph.node) == len(graph.graph.node)
    x = np.concatenate([data.x_test[:100], np.random.default_rng(0).uniform(-2, 2, (100, 1, 8, 8)).astype(np.float32)])
    assert np.array_equal(qdeploy.run_golden(moved, x), qdeploy.run_golden(graph, x))
    _, changed = MoveQuantBeforeLayout().apply(moved)
    assert not changed
