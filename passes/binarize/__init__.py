"""Binarised networks: BiPer (periodic binarisation, CVPR 2024) and the sign-STE baseline, exported as QONNX
``BipolarQuant`` layers with an exact per-channel scale."""

from qdeploy.passes.binarize.convert import analyse, build, freeze
from qdeploy.passes.binarize.layers import BinarizedNet, BinaryActivation, QConv2d, QLinear, QuantInput
from qdeploy.passes.binarize.train import binarize, train_epochs

__all__ = [
    "BinarizedNet",
    "BinaryActivation",
    "QConv2d",
    "QLinear",
    "QuantInput",
    "analyse",
    "binarize",
    "build",
    "freeze",
    "train_epochs",
]
