"""MoveTransposeAcrossMultiThreshold: golden outputs equal the NCHW graph's (qonnx cannot execute the graph it leaves
around MultiThresholds it does not know); transposes leave the thresholds, which read NHWC directly."""

from __future__ import annotations

import numpy as np

import qdeploy
from qdeploy.ir import cleanup
from qdeploy.passes.graph.lower_to_thresholds import LowerToThresholds
from qdeploy.passes.graph.move_transpose_across_multithreshold import MoveTransposeAcrossMultiThreshold
from qdeploy.pipeline import until_fixed_point


def _transposes_next_to_thresholds(graph) -> int:
    count = 0
    for node in graph.graph.node:
        if node.op_type != "MultiThreshold":
            continue
        producer = graph.find_producer(node.input[0])
        consumers = graph.find_consumers(node.output[0]) or []
        count += int(producer is not None and producer.op_type == "Transpose")
        count += sum(c.op_type == "Transpose" for c in consumers)
    return count


def test_channels_last_transposes_cross_thresholds_with_identical_outputs(cnn_float_scales, data):
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean

    _, graph = cnn_float_scales
    lowered = cleanup(graph.transform(LowerToThresholds()))
    channels_last = lowered.transform(ConvertToChannelsLastAndClean(make_input_channels_last=False))
    before = _transposes_next_to_thresholds(channels_last)
    assert before >= 4, "qonnx leaves transposes around the MultiThresholds it does not know"
    moved = until_fixed_point(MoveTransposeAcrossMultiThreshold().apply, channels_last)
    layouts = [
        qdeploy_attr
        for node in moved.graph.node
        if node.op_type == "MultiThreshold"
        for qdeploy_attr in [a.s.decode() for a in node.attribute if a.name == "data_layout"]
    ]
    assert "NHWC" in layouts
    assert _transposes_next_to_thresholds(moved) < before
    # qonnx cannot re-infer channels-last Conv shapes at another batch size: one sample at a time
    for sample in range(8):
        x = data.x_test[sample : sample + 1]
        assert np.array_equal(qdeploy.run_golden(moved, x, chunk=1), qdeploy.run_golden(lowered, x)), f"sample {sample}"
    _, changed = MoveTransposeAcrossMultiThreshold().apply(moved)
    assert not changed
