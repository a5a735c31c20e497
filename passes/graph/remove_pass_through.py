"""Remove ``Identity`` and inference-time ``Dropout`` nodes, keeping the graph's output names.

hls4ml skips these ops while parsing, and when one produces the graph output (QKeras conversions end in an
``Identity``) the output is lost: hls4ml writes a top function without an output argument, which does not compile.
Here the producer writes the graph output directly instead.
"""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

PASS_THROUGH = ("Identity", "Dropout")


class RemovePassThrough(Transformation):
    """Drop Identity/Dropout nodes; consumers (or the graph output) read the pass-through's input instead."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        graph_outputs = {output.name for output in model.graph.output}
        graph_inputs = {graph_input.name for graph_input in model.graph.input}
        for node in model.graph.node:
            if node.op_type not in PASS_THROUGH or len(node.output) != 1 or not node.input:
                continue  # a Dropout with a mask output is a training graph: left for the target to refuse
            source, result = node.input[0], node.output[0]
            if result in graph_outputs:
                producer = model.find_producer(source)
                consumers = [c for c in model.find_consumers(source) or [] if c is not node]
                if source in graph_inputs or producer is None or consumers or source in graph_outputs:
                    continue  # the input is also read elsewhere (or is the graph input): renaming it is not local
                producer.output[list(producer.output).index(source)] = result
            else:
                for consumer in model.find_consumers(result) or []:
                    consumer.input[:] = [source if name == result else name for name in consumer.input]
            model.graph.node.remove(node)
            return model, True
        return model, False
