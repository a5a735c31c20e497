"""Bundled example: a 4-qubit hybrid classifier on Iris (150 flowers, ships with scikit-learn).

Features are scaled to angles in [0, pi], embedded one per qubit (RY), followed by two strongly entangling layers;
<Z> of three qubits feeds a small classical head. Training takes a few seconds and is seeded.

    python examples/iris_quantum.py -o build/iris_quantum     # train, export, compile for a heavy-hex device
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from qdeploy.quantum import CircuitBuilder, QuantumLayer

__all__ = ["IrisData", "load_iris_data", "build", "model", "train", "accuracy"]


@dataclass(frozen=True)
class IrisData:
    x_train: np.ndarray  # float32 (N, 4): features min-max scaled to [0, pi]
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_iris_data(seed: int = 0, test_fraction: float = 0.25) -> IrisData:
    from sklearn.datasets import load_iris

    iris = load_iris()
    x = iris.data.astype(np.float64)
    x = (x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0)) * np.pi
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    x = x.astype(np.float32)
    y = iris.target.astype(np.int64)
    return IrisData(x[train], y[train], x[test], y[test])


def build(layers: int = 2, seed: int = 0) -> nn.Module:
    builder = CircuitBuilder(4, name="iris_circuit")
    builder.angle_embedding(range(4)).strongly_entangling_layers(layers)
    torch.manual_seed(seed)
    return nn.Sequential(QuantumLayer(builder.expval_z([0, 1, 2]), seed=seed), nn.Linear(3, 3))


def train(net: nn.Module, data: IrisData, epochs: int = 60, lr: float = 0.05) -> nn.Module:
    """Full-batch Adam on cross-entropy (112 samples: one step per epoch)."""
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
    return net.eval()


def accuracy(net: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((net(torch.from_numpy(x)).argmax(dim=1).numpy() == y).mean())


def model(epochs: int = 60) -> nn.Module:
    """Factory for the CLI and tests: the trained hybrid classifier."""
    return train(build(), load_iris_data(), epochs=epochs)


def main() -> None:
    import qdeploy
    from qdeploy.quantum import export_hybrid

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="build/iris_quantum")
    parser.add_argument("--device", default="heavy-hex")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs (default 60)")
    args = parser.parse_args()
    data = load_iris_data()
    net = model(epochs=args.epochs)
    print(f"test accuracy (torch): {accuracy(net, data.x_test, data.y_test):.3f}")
    graph = export_hybrid(net, data.x_train)
    artifact = qdeploy.compile(graph, target="quantum", out=args.output, data=data.x_test, quantum={"device": args.device})
    print(artifact.summary())
    y = artifact.predict(data.x_test)
    print(f"test accuracy (compiled, qiskit): {float((y.argmax(axis=1) == data.y_test).mean()):.3f}")


if __name__ == "__main__":
    main()
