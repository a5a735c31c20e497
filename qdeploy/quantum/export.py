"""Export a hybrid torch model (classical layers + ``QuantumLayer``) to a QONNX graph in one call, checked
against torch."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

from qdeploy.custom_op.quantum import DOMAIN
from qdeploy.data import check_array
from qdeploy.errors import QDeployError, one_line
from qdeploy.quantum.layer import QuantumLayer

log = logging.getLogger(__name__)


def has_quantum_layers(model: nn.Module) -> bool:
    return any(isinstance(m, QuantumLayer) for m in model.modules())


def _name_quantum_layers(model: nn.Module) -> None:
    """Give each QuantumLayer's spec its module path as name, so errors and QASM files name the layer."""
    for name, module in model.named_modules():
        if isinstance(module, QuantumLayer) and module.spec.name in ("quantum", ""):
            module.spec = module.spec.rename(name.replace(".", "_") or "quantum")


def export_hybrid(
    model: nn.Module, example: np.ndarray, path: str | Path | None = None, check: np.ndarray | None = None
) -> ModelWrapper:
    """Export ``model`` to a cleaned QONNX graph with one ``QuantumCircuit`` node per QuantumLayer.

    The graph is run by the golden executor on ``check`` (default: ``example``) and must equal torch within the
    bound derived from its float arithmetic (``qdeploy.bounds``: torch and the executor are two implementations of
    the same float32/float64 operations), else QDeployError. Uses the TorchScript exporter (``dynamo=False``): its
    ``autograd.Function.symbolic`` hook is how a custom node is emitted.
    """
    from qdeploy.bounds import derive_bound, tail_tensors
    from qdeploy.golden import run_golden_context
    from qdeploy.ir import load_model, output_name

    example = check_array(example, None, "export example")
    _name_quantum_layers(model)
    model = model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, not gone
                torch.onnx.export(
                    model,
                    (torch.from_numpy(example[:1]),),
                    str(raw),
                    dynamo=False,
                    opset_version=17,
                    custom_opsets={DOMAIN: 1},
                    input_names=["input"],
                    output_names=["output"],
                )
        except QDeployError:
            raise
        except Exception as exc:
            raise QDeployError(f"hybrid model export failed: {type(exc).__name__}: {one_line(exc)}") from exc
        graph = load_model(raw)
    x = check_array(example if check is None else check, example.shape[1:], "export check data")
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    context = run_golden_context(graph, x, keep=tail_tensors(graph))
    difference = np.abs(context[output_name(graph)].astype(np.float64) - expected)
    bound = derive_bound(graph, context)
    error = float(np.max(difference))
    if bound.per_element is None or not np.all(difference <= bound.per_element):
        limit = "bit-exact" if bound.per_element is None else f"the derived bound (max {bound.max:.3g})"
        raise QDeployError(f"exported hybrid graph differs from torch by {error:.3g}, outside {limit}; report this as a bug")
    log.info("exported hybrid model: graph vs torch max abs error %.3g <= derived bound %.3g", error, bound.max)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        graph.save(str(path))
    return graph
