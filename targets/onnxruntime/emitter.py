"""Fresh tensor names and constant initializers for the passes that rewrite a graph into ORT's operators."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


class FreshNames:
    """Unique names against every node, tensor and initializer name already in the graph, and constants added as
    initializers under such names. Subclasses fill ``_taken`` and ``initializers`` in their constructor."""

    _taken: set[str]
    initializers: list[onnx.TensorProto]

    def fresh(self, base: str) -> str:
        name, index = base, 0
        while name in self._taken:
            index += 1
            name = f"{base}_{index}"
        self._taken.add(name)
        return name

    def const(self, base: str, value: np.ndarray) -> str:
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name
