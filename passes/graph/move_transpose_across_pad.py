"""A ``Transpose`` after a ``Pad`` moved above it, the pads permuted with it.

``Transpose(Pad(x, pads), perm)`` is ``Pad(Transpose(x, perm), pads')`` with ``pads'[i] = pads[perm[i]]`` (begins
and ends alike): every output element is the same input element or the same padding value. qonnx's channels-last
conversion stops at a Pad; moving the to-channels-last transpose in front of it lets qonnx cancel it against the
to-channels-first one above, so the Pad computes channels-last (hls4ml pads channels-last images only).
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from qdeploy.ir import node_attr


class MoveTransposeAcrossPad(Transformation):
    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for pad in model.graph.node:
            if pad.op_type != "Pad" or pad.domain != "" or len(pad.input) < 2:
                continue
            pads = model.get_initializer(pad.input[1])
            consumers = model.find_consumers(pad.output[0]) or []
            if pads is None or len(consumers) != 1 or consumers[0].op_type != "Transpose":
                continue
            if len(pad.input) > 3 and pad.input[3]:
                continue  # an axes input: pads for some axes only
            transpose = consumers[0]
            perm = [int(p) for p in node_attr(transpose, "perm", [])]
            rank = len(perm)
            if not perm or np.size(pads) != 2 * rank or model.get_tensor_shape(pad.input[0]) is None:
                continue
            pads = np.asarray(pads, dtype=np.int64).ravel()
            moved = np.concatenate([pads[perm], pads[[rank + p for p in perm]]])
            pads_name = model.make_new_valueinfo_name()
            model.set_initializer(pads_name, moved)
            transposed = model.make_new_valueinfo_name()
            shape = model.get_tensor_shape(pad.input[0])
            model.set_tensor_shape(transposed, [shape[p] for p in perm])
            output = transpose.output[0]
            # x -> Transpose -> Pad -> (the transpose's readers)
            transpose.input[0], transpose.output[0] = pad.input[0], transposed
            pad.input[0], pad.input[1], pad.output[0] = transposed, pads_name, output
            nodes = list(model.graph.node)
            pad_index, transpose_index = nodes.index(pad), nodes.index(transpose)
            model.graph.node.remove(transpose)
            model.graph.node.insert(min(pad_index, transpose_index), transpose)
            return model, True
        return model, False
