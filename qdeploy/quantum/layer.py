"""``QuantumLayer``: a torch module computing a circuit spec's readout, trainable by backprop, exportable to ONNX.

On ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``) the layer becomes one ``QuantumCircuit`` node
(``qdeploy.custom_op.quantum``) carrying the OpenQASM 3 text and the JSON spec; its trainable angles are an
initializer input, so QONNX ``Quant`` nodes can quantize them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from qdeploy.custom_op.quantum import DOMAIN, OP_TYPE
from qdeploy.custom_op.quantum.simulator import simulate
from qdeploy.custom_op.quantum.spec import CircuitSpec, CircuitSpecError, to_qasm3


class _CircuitFunction(torch.autograd.Function):
    """Only used while exporting: its ``symbolic`` emits the custom node (training uses plain autograd)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, spec_json: str, float64: bool) -> torch.Tensor:
        # The exporter only needs the output's shape and dtype here; symbolic() emits the node. Simulating inside
        # the trace would record complex-valued ops that the TorchScript peephole pass cannot handle.
        state = torch._C._get_tracing_state()
        torch._C._set_tracing_state(None)
        try:
            work = torch.float64 if float64 else torch.float32
            with torch.no_grad():
                spec = CircuitSpec.from_json(spec_json)
                return simulate(spec, x.detach().to(work), weight.detach().to(work)).to(x.dtype)
        finally:
            torch._C._set_tracing_state(state)

    @staticmethod
    def symbolic(g: Any, x: Any, weight: Any, spec_json: str, float64: bool) -> Any:
        # Only plain values may cross into symbolic(): the spec travels as its JSON text.
        spec = CircuitSpec.from_json(spec_json)
        out = g.op(f"{DOMAIN}::{OP_TYPE}", x, weight, spec_s=spec_json, qasm_s=to_qasm3(spec), float64_i=int(float64))
        sizes = x.type().sizes()
        if sizes is not None:
            out.setType(x.type().with_sizes([sizes[0], spec.num_outputs]))
        return out


class QuantumLayer(nn.Module):
    """Inputs ``(batch, num_inputs)`` angles -> ``(batch, num_outputs)`` readout of ``spec``.

    ``float64`` simulates in double precision (outputs are cast back to the input dtype); weights start uniform in
    [0, 2 pi) from ``seed`` unless given.
    """

    def __init__(
        self, spec: CircuitSpec | dict | str, weights: Any = None, float64: bool = True, seed: int | None = 0
    ) -> None:
        super().__init__()
        self.spec = spec if isinstance(spec, CircuitSpec) else CircuitSpec.from_json(spec)
        self.spec.validate()
        self.float64 = bool(float64)
        if weights is None:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            weights = torch.rand(self.spec.num_weights, generator=generator) * 2 * math.pi
        weights = torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
        if weights.numel() != self.spec.num_weights:
            raise CircuitSpecError(
                f"quantum layer {self.spec.name!r}: {weights.numel()} weights given, the spec has {self.spec.num_weights}"
            )
        self.weight = nn.Parameter(weights.clone())

    def extra_repr(self) -> str:
        s = self.spec
        sizes = f"qubits={s.num_qubits}, inputs={s.num_inputs}, weights={s.num_weights}, outputs={s.num_outputs}"
        return f"name={s.name!r}, {sizes}"

    def compute(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.spec.num_inputs:
            raise CircuitSpecError(
                f"quantum layer {self.spec.name!r} expects inputs (batch, {self.spec.num_inputs}), got {tuple(x.shape)}"
            )
        if not torch.jit.is_tracing() and not bool(torch.isfinite(x).all()):
            raise CircuitSpecError(f"quantum layer {self.spec.name!r}: non-finite input angles; clean the inputs")
        work = torch.float64 if self.float64 else torch.float32
        return simulate(self.spec, x.to(work), weight.to(work)).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return _CircuitFunction.apply(x, self.weight, self.spec.dumps(), self.float64)
        return self.compute(x, self.weight)
