"""``nn.Flatten`` modules become ``torch.flatten`` calls before brevitas quantizes the graph.

brevitas treats ``torch.flatten`` (function or method) as sign- and precision-preserving, but not the ``nn.Flatten``
module: behind one it cannot tell that the next layer's input is already quantized and unsigned, so it inserts a
*signed* requantizer there. Behind a ReLU (and max-pooling) that halves the levels the next layer sees (an unsigned
4-bit activation re-rounded to a signed 4-bit grid twice as coarse: 3 bits left), e.g. conv -> ReLU -> max-pool ->
Flatten -> Linear. As a function call the quantized ReLU output reaches the layer as it is. (Behind average
pooling brevitas requantizes anyway: the average is not on the ReLU's grid.)
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def apply(graph_model: torch.fx.GraphModule) -> tuple[torch.fx.GraphModule, bool]:
    """Replace every ``nn.Flatten`` call in ``graph_model`` (a torch.fx graph, changed in place) by ``torch.flatten``
    with the same dimensions; returns ``(graph_model, changed)``."""
    changed = False
    for node in list(graph_model.graph.nodes):
        if node.op != "call_module":
            continue
        module = graph_model.get_submodule(node.target)
        if type(module) is not nn.Flatten:
            continue
        with graph_model.graph.inserting_after(node):
            dims = {"start_dim": module.start_dim, "end_dim": module.end_dim}
            call = graph_model.graph.call_function(torch.flatten, node.args, {**node.kwargs, **dims})
        node.replace_all_uses_with(call)
        graph_model.graph.erase_node(node)
        if not any(n.op == "call_module" and n.target == node.target for n in graph_model.graph.nodes):
            graph_model.delete_submodule(node.target)
        log.debug("%s: nn.Flatten -> torch.flatten", node.target)  # an internal rewrite: nothing for the user to act on
        changed = True
    if changed:
        graph_model.recompile()
    return graph_model, changed
