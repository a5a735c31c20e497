"""Move channels-first transposes across the image ops qonnx's channels-last conversion leaves channels-first.

qonnx converts Conv, MaxPool and BatchNormalization to channels-last and leaves ``Transpose(NHWC->NCHW) -> op ->
Transpose(NCHW->NHWC)`` around every other image op. hls4ml computes channels-last, and its ONNX parsers read these
ops' shapes as if they were channels-last already (hls4ml's Resize and GlobalAveragePool parsers) or refuse rank-4
tensors (Concat), so the transposes must go. Each op here commutes with the transpose once its layout moves along:

- ``Concat``: the axis moves (channels: 1 -> last); ``Resize``/``Upsample``: the scales (and sizes, roi) are
  permuted; both stay standard ONNX ops.
- ``GlobalAveragePool``, ``GlobalMaxPool``, ``AveragePool``, ``DepthToSpace``: they become ops of qonnx's
  ``qonnx.custom_op.channels_last`` domain (the domain hls4ml's parsers read as channels-last), which this module
  registers with qonnx's executor: the standard op on the input transposed to channels-first and back.

The to-channels-first transpose then sits after the op, where qonnx's consecutive-transpose removal cancels it
against the next to-channels-last one (or a Flatten -> MatMul absorbs it).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.channels_last.base_wrapped_op import (
    ChannelsLastWrappedOp,
    to_channels_first_args,
    to_channels_last_args,
)

# qonnx lists the ops it converts from the channels-last domain once, on import: import it before registering ours,
# so its own conversion (used by every target) keeps converting Conv, MaxPool and BatchNormalization only
from qonnx.transformation import channels_last as _qonnx_channels_last  # noqa: F401
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import SortGraph

from qdeploy.ir import node_attr

CHANNELS_LAST_DOMAIN = "qonnx.custom_op.channels_last"
#: ops that become channels-last ops of qonnx's domain (executed by ``_ChannelsLastImageOp``)
WRAPPED_OPS = ("GlobalAveragePool", "GlobalMaxPool", "AveragePool", "DepthToSpace")
#: ops that stay standard ONNX with their layout attributes/inputs permuted
PERMUTED_OPS = ("Concat", "Resize", "Upsample")
#: the ONNX opset the wrapped ops execute at (every attribute they may carry exists there)
STANDARD_OPSET = 13


class _ChannelsLastImageOp(ChannelsLastWrappedOp):
    """The standard op on the channels-first view of a channels-last input (qonnx's wrapper executes it so)."""

    _channelsLast_node_types = [*ChannelsLastWrappedOp._channelsLast_node_types, *WRAPPED_OPS]

    def get_nodeattr_types(self) -> dict:
        return {
            "kernel_shape": ("ints", False, []),
            "strides": ("ints", False, []),
            "pads": ("ints", False, []),
            "ceil_mode": ("i", False, 0),
            "count_include_pad": ("i", False, 0),
            "blocksize": ("i", False, 0),
            "mode": ("s", False, ""),
        }

    def make_shape_compatible_op(self, model: ModelWrapper):
        shape = model.get_tensor_shape(self.onnx_node.input[0])
        out = channels_last_output_shape(self.onnx_node, shape, self.onnx_opset_version)
        values = np.zeros(out, dtype=np.float32)
        return helper.make_node(
            "Constant",
            inputs=[],
            outputs=[self.onnx_node.output[0]],
            value=helper.make_tensor("const_tensor", TensorProto.FLOAT, values.shape, values.ravel()),
            name=self.onnx_node.name,
        )

    def verify_node(self) -> list[str]:
        return ChannelsLastWrappedOp.verify_node(self)

    def execute_node(self, context, graph) -> None:
        # qonnx stamps the one-node model it runs with the custom domain's opset (1), which predates DepthToSpace's
        # mode attribute and AveragePool's ceil_mode: run the standard op at a version that has them
        self.onnx_opset_version = max(int(self.onnx_opset_version or 1), STANDARD_OPSET)
        super().execute_node(context, graph)


def channels_last_output_shape(node, shape: list[int], opset: int | None = None) -> list[int]:
    """The channels-last output shape of the channels-last form of ``node`` on a channels-last input ``shape``
    (ONNX shape inference of the standard op on the channels-first shape, transposed back)."""
    ndim = len(shape)
    first = [shape[i] for i in to_channels_first_args(ndim)]
    standard = onnx.NodeProto()
    standard.CopyFrom(node)
    standard.domain = ""
    del standard.input[1:]
    standard.output[:] = ["y"]
    standard.input[0] = "x"
    graph = helper.make_graph(
        [standard],
        "shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, first)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    opsets = [helper.make_opsetid("", max(int(opset or 1), STANDARD_OPSET))]
    inferred = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=opsets), strict_mode=True)
    dims = [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
    return [dims[i] for i in to_channels_last_args(len(dims))]


def _register() -> None:
    from qonnx.custom_op.registry import add_op_to_domain, hasCustomOp

    for op in WRAPPED_OPS:
        if not hasCustomOp(CHANNELS_LAST_DOMAIN, op):
            add_op_to_domain(CHANNELS_LAST_DOMAIN, type(f"{op}_v1", (_ChannelsLastImageOp,), {}))


_register()


def _to_first_input(model: ModelWrapper, tensor: str):
    """The Transpose(channels-last -> channels-first) producing ``tensor``, or None."""
    producer = model.find_producer(tensor)
    if producer is None or producer.op_type != "Transpose":
        return None
    shape = model.get_tensor_shape(producer.input[0])
    if shape is None or len(shape) not in (3, 4):
        return None
    perm = tuple(int(p) for p in node_attr(producer, "perm", ()))
    return producer if perm == tuple(to_channels_first_args(len(shape))) else None


def _permuted_constant(model: ModelWrapper, name: str, perm: tuple[int, ...]) -> str:
    """A new initializer holding ``name``'s per-axis values (scales, sizes; roi's starts and ends) in ``perm`` order
    (channels-last axis j is channels-first axis perm[j])."""
    values = np.asarray(model.get_initializer(name))
    if values.size == 0:
        return name  # an empty placeholder (scales when sizes are given)
    if values.size == 2 * len(perm):  # roi: starts then ends
        reordered = np.concatenate([values[: len(perm)][list(perm)], values[len(perm) :][list(perm)]])
    else:
        reordered = values[list(perm)]
    new_name = model.make_new_valueinfo_name()
    model.set_initializer(new_name, reordered.astype(values.dtype))
    return new_name


def _to_last(model: ModelWrapper, name: str, to_last: tuple[int, ...]) -> str:
    """``name`` channels-last: an initializer transposed, or the output of a (shared) to-channels-last Transpose."""
    values = model.get_initializer(name)
    if values is not None:
        new_name = model.make_new_valueinfo_name()
        model.set_initializer(new_name, np.ascontiguousarray(np.transpose(values, to_last)))
        return new_name
    for consumer in model.find_consumers(name) or []:
        if consumer.op_type == "Transpose" and tuple(int(p) for p in node_attr(consumer, "perm", ())) == to_last:
            return consumer.output[0]  # one transpose per tensor: qonnx moves a transpose upstream of a non-fork only
    output = model.make_new_valueinfo_name()
    shape = model.get_tensor_shape(name)
    model.set_tensor_shape(output, [shape[i] for i in to_last])
    transpose = helper.make_node("Transpose", [name], [output], perm=list(to_last), name=f"{name}_to_channels_last")
    model.graph.node.append(transpose)
    return output


def _can_move(model: ModelWrapper, node) -> bool:
    if node.op_type in WRAPPED_OPS:
        return node.domain == "" and len(node.output) == 1
    if node.op_type in ("Resize", "Upsample"):
        # its roi/scales/sizes must be constants (permuted) or absent
        return all(not name or model.get_initializer(name) is not None for name in node.input[1:])
    return node.op_type == "Concat"


class ImageOpsChannelsLast(Transformation):
    """``op(Transpose_to_channels_first(x), ...)`` -> ``Transpose_to_channels_first(op_channels_last(x, ...))`` for
    the ops above (a Concat's other inputs get a to-channels-last transpose)."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in model.graph.node:
            if node.op_type not in (*WRAPPED_OPS, *PERMUTED_OPS) or not _can_move(model, node):
                continue
            data = list(node.input) if node.op_type == "Concat" else [node.input[0]]
            transposes = [_to_first_input(model, name) for name in data]
            found = [t for t in transposes if t is not None]
            if not found:
                continue
            ndim = len(model.get_tensor_shape(found[0].input[0]))
            to_first, to_last = tuple(to_channels_first_args(ndim)), tuple(to_channels_last_args(ndim))
            if any(len(model.get_tensor_shape(name) or []) != ndim for name in data):
                continue
            for index, (name, transpose) in enumerate(zip(data, transposes, strict=True)):
                # a channels-first input that no transpose produced (a Concat's branch qonnx left channels-first):
                # a constant is transposed, a runtime tensor gets a to-channels-last transpose, which qonnx's
                # transpose moves cancel against the to-channels-first one upstream where they can
                node.input[index] = transpose.input[0] if transpose is not None else _to_last(model, name, to_last)
            if node.op_type == "Concat":
                axis = int(node_attr(node, "axis", 1)) % ndim
                for attribute in node.attribute:
                    if attribute.name == "axis":
                        attribute.i = to_first[axis]  # channels-first axis k is channels-last axis to_first[k]
            elif node.op_type in ("Resize", "Upsample"):
                for index in range(1, len(node.input)):
                    if node.input[index]:
                        node.input[index] = _permuted_constant(model, node.input[index], to_last)
            else:
                node.domain = CHANNELS_LAST_DOMAIN
            output = node.output[0]
            shape = model.get_tensor_shape(output)
            moved = model.make_new_valueinfo_name()
            node.output[0] = moved
            model.set_tensor_shape(moved, [shape[i] for i in to_last])
            model.graph.node.append(
                helper.make_node("Transpose", [moved], [output], perm=list(to_first), name=f"{node.name}_to_channels_first")
            )
            for transpose in {t.name: t for t in found}.values():
                if not model.find_consumers(transpose.output[0]) and transpose.output[0] not in {
                    o.name for o in model.graph.output
                }:
                    model.graph.node.remove(transpose)
            return model.transform(SortGraph(), cleanup=False), True
        return model, False
