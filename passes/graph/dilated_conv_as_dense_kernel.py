"""A dilated ``Conv`` as an undilated one whose kernel has the dilation's zeros written out.

A kernel ``k`` with dilation ``d`` reads the same input pixels as a kernel ``(k - 1) * d + 1`` whose weights are the
original ones every ``d`` pixels and zero between them: the products with zero add nothing, so every output is the
same sum (the weights' ranges, which the target derives its accumulator types from, are unchanged). hls4ml reads
``dilations`` but computes every convolution undilated (io_stream gave wrong results; io_parallel failed to convert).
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from qdeploy.ir import node_attr


class DilatedConvAsDenseKernel(Transformation):
    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        changed = False
        for node in model.graph.node:
            if node.op_type != "Conv" or node.domain != "":
                continue
            dilations = [int(d) for d in node_attr(node, "dilations", None) or []]
            weights = model.get_initializer(node.input[1]) if len(node.input) > 1 else None
            if not dilations or all(d == 1 for d in dilations) or weights is None:
                continue  # runtime weights (a Quant on them) are folded first: the next round takes them
            kernel = weights.shape[2:]
            dense = np.zeros(
                (*weights.shape[:2], *((k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True))),
                dtype=weights.dtype,
            )
            dense[(slice(None), slice(None), *(slice(None, None, d) for d in dilations))] = weights
            name = model.make_new_valueinfo_name()
            model.set_initializer(name, dense)
            if not [other for other in model.find_consumers(node.input[1]) or [] if other is not node]:
                model.del_initializer(node.input[1])
            node.input[1] = name
            for attribute in list(node.attribute):
                if attribute.name in ("dilations", "kernel_shape"):
                    node.attribute.remove(attribute)
            node.attribute.append(helper.make_attribute("dilations", [1] * len(dilations)))
            node.attribute.append(helper.make_attribute("kernel_shape", list(dense.shape[2:])))
            changed = True
        return model, changed
