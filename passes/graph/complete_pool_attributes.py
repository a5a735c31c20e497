"""Write out the ``MaxPool``/``AveragePool`` attributes ONNX lets a file leave to its default, ``auto_pad`` as pads.

ONNX defaults ``pads`` to zeros and ``strides`` to ones. qonnx's channels-last conversion requires ``pads``
("Required attribute pads unspecified in a MaxPool node") and hls4ml's pooling parser reads ``strides`` and
``pads`` without defaults, so both get the explicit form, which computes the same (``CompleteConvAttributes`` does
this for Conv).
"""

from __future__ import annotations

from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import node_attr
from qdeploy.passes.graph.complete_conv_attributes import _same_pads


class CompletePoolAttributes(Transformation):
    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        changed = False
        for node in model.graph.node:
            if node.op_type not in ("MaxPool", "AveragePool") or node.domain != "":
                continue
            kernel = [int(k) for k in node_attr(node, "kernel_shape", [])]
            if not kernel:
                continue  # required by ONNX: left for the checks downstream
            spatial = len(kernel)
            present = {attribute.name for attribute in node.attribute}
            strides = [int(s) for s in node_attr(node, "strides", None) or [1] * spatial]
            dilations = [int(d) for d in node_attr(node, "dilations", None) or [1] * spatial]
            auto_pad = node_attr(node, "auto_pad", "NOTSET")
            auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
            pads = node_attr(node, "pads", None)
            if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                shape = model.get_tensor_shape(node.input[0])
                if shape is None:
                    raise UnsupportedModelError(f"node {node.name}: auto_pad {auto_pad} needs a known input shape")
                pairs = [
                    _same_pads(int(shape[2 + axis]), kernel[axis], strides[axis], dilations[axis], auto_pad == "SAME_UPPER")
                    for axis in range(spatial)
                ]
                pads = [begin for begin, _ in pairs] + [end for _, end in pairs]
            elif auto_pad == "VALID" or pads is None:
                pads = [0] * (2 * spatial)
            if "strides" in present and "pads" in present and "auto_pad" not in present:
                continue
            for attribute in list(node.attribute):
                if attribute.name in ("auto_pad", "pads", "strides"):
                    node.attribute.remove(attribute)
            node.attribute.append(helper.make_attribute("strides", strides))
            node.attribute.append(helper.make_attribute("pads", [int(p) for p in pads]))
            changed = True
        return model, changed
