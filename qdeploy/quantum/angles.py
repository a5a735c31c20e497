"""``quantize_angles``: put a QONNX ``Quant`` on the trainable angles of every ``QuantumCircuit`` node.

The quantized angles are then part of the specification (the golden executor runs the ``Quant``), so every
target stays exact against it; the error against float angles is what the quantum target reports per node.
The graph pass itself is ``qdeploy.passes.graph.quantize_angles.QuantizeAngles`` (grid and wrapping explained
there): ``bits=3`` on 2-pi-periodic weights gives multiples of pi/4, the Clifford+T grid.
"""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper


def quantize_angles(model: ModelWrapper, bits: int) -> ModelWrapper:
    """A copy of ``model`` with every QuantumCircuit's trainable angles quantized to ``bits`` (see module doc)."""
    # Imported here: the core (qdeploy.*) never imports qdeploy.passes at module import time.
    from qdeploy.ir import cleanup, load_model
    from qdeploy.passes.graph.quantize_angles import QuantizeAngles

    return cleanup(load_model(model, clean=False).transform(QuantizeAngles(bits)))
