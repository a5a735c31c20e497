"""Bundled example: small networks on scikit-learn's digits (1,797 8x8 images, ships offline).

Factories for the CLI (``examples/digits.py:mlp`` / ``examples/digits.py:cnn``) return *trained* float models;
training takes a few seconds on 2 CPU cores and is seeded, so the same call gives the same weights.

    python examples/digits.py -o build/digits    # the data files the README's CLI lines use, and a W4A8 quantization
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["DigitsData", "load_digits_data", "mlp", "cnn", "train", "accuracy", "write_calibration_npz", "write_cli_data"]


@dataclass(frozen=True)
class DigitsData:
    x_train: np.ndarray  # float32, (N, 1, 8, 8), pixel values scaled to [0, 1]
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits_data(seed: int = 0, test_fraction: float = 0.25) -> DigitsData:
    """Digits as NCHW float32 in [0, 1] with a fixed, seeded train/test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return DigitsData(x[train], y[train], x[test], y[test])


def build_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def build_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 2 * 2, 10),
    )


def train(model: nn.Module, data: DigitsData, epochs: int = 30, seed: int = 0, lr: float = 3e-3) -> nn.Module:
    """Full-batch-ish Adam training; seeded so the result is reproducible."""
    torch.manual_seed(seed)
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(64):
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    return model


def accuracy(predict, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``predict`` (a torch module or any callable mapping arrays to logits)."""
    if isinstance(predict, nn.Module):
        with torch.no_grad():
            logits = predict(torch.from_numpy(x)).detach().numpy()
    else:
        logits = np.asarray(predict(x))
    return float((logits.argmax(axis=1) == y).mean())


def mlp(seed: int = 0) -> nn.Module:
    """A trained 64-32-32-10 MLP on digits."""
    torch.manual_seed(seed)
    return train(build_mlp(), load_digits_data(), seed=seed)


def cnn(seed: int = 0) -> nn.Module:
    """A trained two-conv CNN (Conv-ReLU-MaxPool x2, Linear) on digits."""
    torch.manual_seed(seed)
    return train(build_cnn(), load_digits_data(), seed=seed)


def write_calibration_npz(path: str, n: int = 256) -> str:
    """Write ``n`` training images as ``x`` in an .npz, the CLI's --calib format."""
    np.savez(path, x=load_digits_data().x_train[:n])
    return path


def write_cli_data(folder: Path, data: DigitsData) -> dict[str, Path]:
    """The files the README's command lines read: calib.npz (x), train.npz and test.npz (x, y)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / f"{name}.npz" for name in ("calib", "train", "test")}
    np.savez(paths["calib"], x=data.x_train[:512])
    np.savez(paths["train"], x=data.x_train, y=data.y_train)
    np.savez(paths["test"], x=data.x_test, y=data.y_test)
    return paths


def main() -> None:
    import qdeploy

    parser = argparse.ArgumentParser(description="digits: write the CLI's data files, train a network, quantize it")
    parser.add_argument("-o", "--output", default="build/digits", help="folder for the .npz files and the model")
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    args = parser.parse_args()
    data = load_digits_data()
    paths = write_cli_data(Path(args.output), data)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
    torch.manual_seed(0)
    net = train(build_mlp() if args.model == "mlp" else build_cnn(), data, epochs=args.epochs)
    qmodel = qdeploy.quantize(net, data.x_train[:512], weight_bits=4, act_bits=8, method="auto")
    graph = qdeploy.export(qmodel, data.x_train[:1], Path(args.output) / f"{args.model}_w4a8.onnx")
    quantized = accuracy(lambda x: qdeploy.run_golden(graph, x), data.x_test, data.y_test)
    print(
        f"{args.model}: test accuracy float {100 * accuracy(net, data.x_test, data.y_test):.2f} % -> W4A8 "
        f"{100 * quantized:.2f} %; wrote {Path(args.output) / f'{args.model}_w4a8.onnx'}"
    )


if __name__ == "__main__":
    main()
