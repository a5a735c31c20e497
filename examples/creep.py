"""Bundled example: "let the quantum creep in" on digits (1,797 8x8 images, ships with scikit-learn).

A classical network 64 -> 4 -> [4 -> 4] x 3 -> 10 has its three hidden 4 -> 4 layers (Linear + tanh) replaced one
by one by 4-qubit quantum layers with the same input and output (RY(pi x) embedding, two basic entangling layers,
<Z> per qubit); after each replacement the network is fine-tuned from the previous step's weights. The accuracy
at each step is the example's result.

    python examples/creep.py -o build/creep        # train all steps, print accuracies, compile the last one
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

if __package__ in (None, ""):  # run as a script (python examples/creep.py): make the examples package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.digits import DigitsData, load_digits_data  # noqa: E402
from qdeploy.quantum import CircuitBuilder, QuantumLayer  # noqa: E402

__all__ = ["HIDDEN", "classical_net", "quantum_hidden", "creep", "accuracy", "flat_digits"]

HIDDEN = 4  # width of the hidden layers = qubits per quantum layer


def flat_digits(seed: int = 0) -> DigitsData:
    data = load_digits_data(seed)
    return DigitsData(
        data.x_train.reshape(len(data.x_train), -1), data.y_train, data.x_test.reshape(len(data.x_test), -1), data.y_test
    )


def classical_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(64, HIDDEN), nn.Tanh()]
    for _ in range(3):
        layers.append(nn.Sequential(nn.Linear(HIDDEN, HIDDEN), nn.Tanh()))
    layers.append(nn.Linear(HIDDEN, 10))
    return nn.Sequential(*layers)


def quantum_hidden(index: int, seed: int = 0) -> QuantumLayer:
    """A 4 -> 4 quantum layer: inputs in [-1, 1] (tanh) become angles pi/2 * x; outputs <Z> in [-1, 1] like tanh.

    Trainable angles start near zero (uniform +-0.1): random angles in [0, 2 pi) scramble what the replaced layer
    passed on, and fine-tuning then starts far from the previous step's solution."""
    builder = CircuitBuilder(HIDDEN, name=f"hidden{index}")
    spec = builder.angle_embedding(range(HIDDEN), scale=np.pi / 2).basic_entangler_layers(2, rotation="Y").expval_z()
    weights = np.random.default_rng(seed + index).uniform(-0.1, 0.1, spec.num_weights)
    return QuantumLayer(spec, weights=weights)


def train(net: nn.Module, data: DigitsData, epochs: int, lr: float = 0.02, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(128):
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
    return net.eval()


def accuracy(net: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((net(torch.from_numpy(x)).argmax(dim=1).numpy() == y).mean())


def creep(
    data: DigitsData | None = None, epochs: int = 60, finetune_epochs: int = 10, steps: int = 3
) -> list[tuple[int, float, nn.Module]]:
    """Train the classical net, then replace hidden layers 1..``steps`` by quantum layers one at a time.

    Returns ``(quantum layers, test accuracy, model)`` per step, step 0 being the classical net."""
    data = data or flat_digits()
    net = train(classical_net(), data, epochs)
    results = [(0, accuracy(net, data.x_test, data.y_test), net)]
    for step in range(1, steps + 1):
        net = copy.deepcopy(net)
        net[1 + step] = quantum_hidden(step)  # net[2], net[3], net[4] are the hidden layers
        net = train(net, data, finetune_epochs, lr=0.03, seed=step)
        results.append((step, accuracy(net, data.x_test, data.y_test), net))
    return results


def main() -> None:
    import qdeploy
    from qdeploy.quantum import export_hybrid

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="build/creep")
    parser.add_argument("--device", default="heavy-hex")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs of the classical net (default 60)")
    parser.add_argument("--finetune-epochs", type=int, default=10, help="fine-tuning epochs per step (default 10)")
    parser.add_argument("--steps", type=int, default=3, choices=(1, 2, 3), help="hidden layers made quantum (default 3)")
    args = parser.parse_args()
    data = flat_digits()
    results = creep(data, epochs=args.epochs, finetune_epochs=args.finetune_epochs, steps=args.steps)
    print("| quantum layers | test accuracy |\n|---|---|")
    for step, acc, _ in results:
        print(f"| {step} | {acc:.3f} |")
    graph = export_hybrid(results[-1][2], data.x_train[:256])
    artifact = qdeploy.compile(graph, target="quantum", out=args.output, data=data.x_test, quantum={"device": args.device})
    print(artifact.summary())


if __name__ == "__main__":
    main()
