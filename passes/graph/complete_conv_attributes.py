"""Write out every ``Conv`` attribute ONNX lets a file leave to its default, and ``auto_pad`` as explicit pads.

ONNX defaults ``pads`` to zeros, ``strides`` and ``dilations`` to ones, ``group`` to 1 and ``kernel_shape`` to the
weights' spatial shape; QKeras conversions rely on that. qonnx's channels-last conversion requires ``pads``
("Required attribute pads unspecified") and hls4ml rejects ``auto_pad``, so both get the explicit form, which
computes the same.
"""

from __future__ import annotations

from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import node_attr


def _same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """ONNX SAME_UPPER/SAME_LOWER: output size ceil(size / stride), the odd padding at the end (upper) or start."""
    effective = (kernel - 1) * dilation + 1
    output = -(-size // stride)
    total = max((output - 1) * stride + effective - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


class CompleteConvAttributes(Transformation):
    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        changed = False
        for node in model.graph.node:
            if node.op_type != "Conv":
                continue
            weights_shape = model.get_tensor_shape(node.input[1])
            if weights_shape is None:
                continue
            spatial = len(weights_shape) - 2
            present = {attribute.name for attribute in node.attribute}
            kernel = [int(k) for k in node_attr(node, "kernel_shape", weights_shape[2:])]
            strides = [int(s) for s in node_attr(node, "strides", [1] * spatial)]
            dilations = [int(d) for d in node_attr(node, "dilations", [1] * spatial)]
            auto_pad = str(node_attr(node, "auto_pad", "NOTSET"))
            pads = node_attr(node, "pads", None)
            if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                input_shape = model.get_tensor_shape(node.input[0])
                if input_shape is None:
                    raise UnsupportedModelError(f"node {node.name}: auto_pad {auto_pad} needs a known input shape")
                upper = auto_pad == "SAME_UPPER"
                pairs = [
                    _same_pads(int(input_shape[2 + axis]), kernel[axis], strides[axis], dilations[axis], upper)
                    for axis in range(spatial)
                ]
                pads = [begin for begin, _ in pairs] + [end for _, end in pairs]
            elif auto_pad == "VALID" or pads is None:
                pads = [0] * (2 * spatial)
            wanted = {
                "kernel_shape": kernel,
                "strides": strides,
                "dilations": dilations,
                "pads": [int(p) for p in pads],
                "group": int(node_attr(node, "group", 1)),
            }
            missing = {name: value for name, value in wanted.items() if name not in present}
            if not missing and "auto_pad" not in present:
                continue
            for attribute in list(node.attribute):
                if attribute.name in ("auto_pad", "pads"):
                    node.attribute.remove(attribute)
            for name, value in wanted.items():
                if name not in present or name == "pads":
                    node.attribute.append(helper.make_attribute(name, value))
            changed = True
        return model, changed
