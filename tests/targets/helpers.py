"""Helpers for target tests: graph edits that make a model unsupported in a known way."""

from __future__ import annotations

import numpy as np
import onnx
from qonnx.core.modelwrapper import ModelWrapper


def copy_graph(graph: ModelWrapper) -> ModelWrapper:
    return ModelWrapper(onnx.ModelProto.FromString(graph.model.SerializeToString()))


def activation_quants(graph: ModelWrapper) -> list:
    return [n for n in graph.graph.node if n.op_type == "Quant" and graph.get_initializer(n.input[0]) is None]


def set_activation_bits(graph: ModelWrapper, index: int, bits: int) -> str:
    node = activation_quants(graph)[index]
    graph.set_initializer(node.input[3], np.asarray(float(bits), dtype=np.float32))
    return node.name


def set_rounding(graph: ModelWrapper, index: int, mode: str) -> str:
    node = activation_quants(graph)[index]
    for attribute in node.attribute:
        if attribute.name == "rounding_mode":
            attribute.s = mode.encode()
    return node.name


def assert_no_output(out) -> None:
    """A failed compile leaves neither the folder nor its staging sibling."""
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))
