"""Give every bias-less ``Gemm`` an explicit zero bias.

qonnx 1.0's ``GemmToMatMul`` indexes ``node.input[2]`` and crashes (IndexError) on a 2-input Gemm, which is
what brevitas/torch export for ``nn.Linear(bias=False)``. A zero bias is exact and lets it run.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation


class FillGemmBias(Transformation):
    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        changed = False
        for node in model.graph.node:
            if node.op_type != "Gemm" or (len(node.input) > 2 and node.input[2]):
                continue
            shape = model.get_tensor_shape(node.output[0])
            if shape is None:
                continue
            bias_name = model.make_new_valueinfo_name()
            model.set_initializer(bias_name, np.zeros((int(shape[-1]),), dtype=np.float32))
            if len(node.input) == 2:
                node.input.append(bias_name)
            else:
                node.input[2] = bias_name
            changed = True
        return model, changed
