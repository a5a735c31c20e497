"""FillGemmBias: golden output unchanged; every Gemm has a bias; qonnx GemmToMatMul then runs."""

from __future__ import annotations

import numpy as np
from qonnx.transformation.gemm_to_matmul import GemmToMatMul

import qdeploy
from qdeploy.passes.graph.fill_gemm_bias import FillGemmBias


def test_bias_less_gemm_gets_zero_bias_and_converts(biasless_dynamo_path, data):
    graph = qdeploy.load(biasless_dynamo_path)
    gemms = [n for n in graph.graph.node if n.op_type == "Gemm"]
    assert gemms and all(len(n.input) == 2 for n in gemms)
    before = qdeploy.run_golden(graph, data.x_test[:100])
    fixed, changed = FillGemmBias().apply(graph)
    assert changed
    assert all(len(n.input) == 3 for n in fixed.graph.node if n.op_type == "Gemm")
    assert np.array_equal(qdeploy.run_golden(fixed, data.x_test[:100]), before)
    converted = fixed.transform(GemmToMatMul())
    assert not [n for n in converted.graph.node if n.op_type == "Gemm"]
    assert np.array_equal(qdeploy.run_golden(converted, data.x_test[:100]), before)
    _, changed_again = FillGemmBias().apply(fixed)
    assert not changed_again
