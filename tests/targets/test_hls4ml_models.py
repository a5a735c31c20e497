"""The networks people bring to hls4ml, compiled with a plain ``qdeploy compile --target hls4ml``: FINN's BNN-PYNQ
networks (random weights, randomized BatchNorm statistics; a CNV with the real structure at a small width), a
residual block, depthwise and grouped convolutions, and Concat + nearest Resize; architectural equivalents of the
QONNX zoo's KWS MLP, QKeras jet tagger (float input) and RadioML VGG10 (Conv1d). Each is bit-exact, within the bound
of its float tail, or refused by name before anything is written.

The builders are shared with ``benchmarks/hls4ml_exactness.py``, which runs the full-size networks (``--networks``,
``--zoo``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import qdeploy
from qdeploy.errors import UnsupportedModelError
from tests.targets.helpers import assert_no_output

#: FINN CNV's layer widths (``brevitas_examples.bnn_pynq.models.CNV``) and a small variant with the same structure
CNV_FULL = {"conv": [(64, False), (64, True), (128, False), (128, True), (256, False), (256, False)], "fc": [256, 512, 512]}
CNV_SMALL = {"conv": [(8, False), (8, True), (16, False), (16, True), (32, False), (32, False)], "fc": [32, 64, 64]}


def randomize_batchnorm(module, seed: int = 0) -> None:
    """Random BatchNorm statistics and affine parameters (untrained BatchNorm is the identity, which hides bugs)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            features = layer.num_features
            layer.running_mean.copy_(torch.randn(features, generator=generator) * 0.5)
            layer.running_var.copy_(torch.rand(features, generator=generator) * 2 + 0.2)
            if layer.affine:
                layer.weight.data.copy_(torch.randn(features, generator=generator) * 0.5 + 1)
                layer.bias.data.copy_(torch.randn(features, generator=generator) * 0.3)


@contextlib.contextmanager
def _cnv_widths(widths: dict) -> Iterator[None]:
    """FINN's CNV reads its layer widths from module constants: build one at other widths, same structure."""
    from unittest import mock

    from brevitas_examples.bnn_pynq.models import CNV as cnv_module

    fc = widths["fc"]
    with (
        mock.patch.object(cnv_module, "CNV_OUT_CH_POOL", widths["conv"]),
        mock.patch.object(cnv_module, "INTERMEDIATE_FC_FEATURES", [(fc[0], fc[1]), (fc[1], fc[2])]),
        mock.patch.object(cnv_module, "LAST_FC_IN_FEATURES", fc[2]),
    ):
        yield


def finn_network(name: str, widths: dict | None = None, seed: int = 0):
    """A FINN BNN-PYNQ network (``tfc_2w2a``, ``sfc_1w1a``, ``lfc_1w2a``, ``cnv_2w2a`` ...) with random weights and
    BatchNorm statistics; CNV at ``widths`` (default: FINN's own)."""
    import torch
    from brevitas_examples.bnn_pynq import models

    torch.manual_seed(seed)
    if name.startswith("cnv") and widths is not None:
        from brevitas_examples.bnn_pynq.models.CNV import CNV

        weight_bits, act_bits = (int(part[0]) for part in name.split("_")[1].split("w"))
        with _cnv_widths(widths):
            model = CNV(num_classes=10, weight_bit_width=weight_bits, act_bit_width=act_bits, in_bit_width=8, in_ch=3)
    else:
        model = getattr(models, name)(pretrained=False)
    randomize_batchnorm(model.eval(), seed)
    return model


def _quantizers(bits: int, scale: str):
    import brevitas.quant as quant

    kind = "FixedPoint" if scale == "po2" else "Float"
    return (
        getattr(quant, f"Int8WeightPerTensor{kind}").let(bit_width=bits),
        getattr(quant, f"Int8ActPerTensor{kind}").let(bit_width=bits),
        getattr(quant, f"Uint8ActPerTensor{kind}").let(bit_width=bits),
    )


def residual_block(bits: int = 4, scale: str = "po2"):
    """Input quantizer -> conv -> ReLU (the skip) -> conv -> ReLU -> conv, + skip (an Add of two runtime tensors)
    -> quantizer -> linear."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    weight, signed, unsigned = _quantizers(bits, scale)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_quant = qnn.QuantIdentity(act_quant=signed)
            self.conv1 = qnn.QuantConv2d(1, 4, 3, padding=1, weight_quant=weight)
            self.relu1 = qnn.QuantReLU(act_quant=unsigned)
            self.conv2 = qnn.QuantConv2d(4, 4, 3, padding=1, weight_quant=weight)
            self.relu2 = qnn.QuantReLU(act_quant=unsigned)
            self.conv3 = qnn.QuantConv2d(4, 4, 3, padding=1, weight_quant=weight)
            self.sum_quant = qnn.QuantIdentity(act_quant=signed)
            self.fc = qnn.QuantLinear(4 * 8 * 8, 10, weight_quant=weight)

        def forward(self, x):
            skip = self.relu1(self.conv1(self.input_quant(x)))
            y = self.conv3(self.relu2(self.conv2(skip)))
            return self.fc(torch.flatten(self.sum_quant(y + skip), 1))

    return Residual()


def separable_convolutions(bits: int = 4, scale: str = "po2", groups: int = 2):
    """Conv -> depthwise conv (groups = channels) -> grouped conv (``groups``) -> pointwise conv -> linear."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    weight, signed, unsigned = _quantizers(bits, scale)

    class Separable(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_quant = qnn.QuantIdentity(act_quant=signed)
            self.layers = nn.Sequential(
                qnn.QuantConv2d(1, 8, 3, padding=1, weight_quant=weight),
                qnn.QuantReLU(act_quant=unsigned),
                qnn.QuantConv2d(8, 8, 3, padding=1, groups=8, weight_quant=weight),
                qnn.QuantReLU(act_quant=unsigned),
                qnn.QuantConv2d(8, 8, 3, padding=1, groups=groups, weight_quant=weight),
                qnn.QuantReLU(act_quant=unsigned),
                qnn.QuantConv2d(8, 4, 1, weight_quant=weight),
                qnn.QuantReLU(act_quant=unsigned),
            )
            self.fc = qnn.QuantLinear(4 * 8 * 8, 10, weight_quant=weight)

        def forward(self, x):
            return self.fc(torch.flatten(self.layers(self.input_quant(x)), 1))

    return Separable()


def concat_resize(bits: int = 4, scale: str = "po2", mode: str = "nearest"):
    """Two branches at two resolutions (max pooling, 2x upsampling, nearest unless ``mode`` says otherwise)
    concatenated on channels."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    weight, signed, unsigned = _quantizers(bits, scale)

    class ConcatResize(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_quant = qnn.QuantIdentity(act_quant=signed)
            self.conv1 = qnn.QuantConv2d(1, 4, 3, padding=1, weight_quant=weight)
            self.relu1 = qnn.QuantReLU(act_quant=unsigned)
            self.conv2 = qnn.QuantConv2d(4, 4, 3, padding=1, weight_quant=weight)
            self.relu2 = qnn.QuantReLU(act_quant=unsigned)
            self.merge = qnn.QuantConv2d(8, 4, 1, weight_quant=weight)
            self.relu3 = qnn.QuantReLU(act_quant=unsigned)
            self.fc = qnn.QuantLinear(4 * 8 * 8, 10, weight_quant=weight)

        def forward(self, x):
            full = self.relu1(self.conv1(self.input_quant(x)))
            half = self.relu2(self.conv2(nn.functional.max_pool2d(full, 2)))
            both = torch.cat([full, nn.functional.interpolate(half, scale_factor=2, mode=mode)], dim=1)
            return self.fc(torch.flatten(self.relu3(self.merge(both)), 1))

    return ConcatResize()


def branches_concatenated(bits: int = 4, scale: str = "float", shared: bool = True, output_quant: bool = False):
    """The quantized input read by two conv branches (3x3 and 5x5), whose ReLUs share one quantizer (``shared``: one
    scale, as brevitas's QuantCat or a reused QuantReLU give; else a quantizer each), concatenated on channels ->
    1x1 conv -> linear (-> a quantizer, ``output_quant``)."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    weight, signed, unsigned = _quantizers(bits, scale)

    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_quant = qnn.QuantIdentity(act_quant=signed)
            self.conv3 = qnn.QuantConv2d(1, 4, 3, padding=1, weight_quant=weight)
            self.conv5 = qnn.QuantConv2d(1, 4, 5, padding=2, weight_quant=weight)
            self.relu = qnn.QuantReLU(act_quant=unsigned)
            self.relu5 = self.relu if shared else qnn.QuantReLU(act_quant=unsigned)
            self.merge = qnn.QuantConv2d(8, 4, 1, weight_quant=weight)
            self.relu_merge = qnn.QuantReLU(act_quant=unsigned)
            self.fc = qnn.QuantLinear(4 * 8 * 8, 10, weight_quant=weight)
            self.output_quant = qnn.QuantIdentity(act_quant=signed) if output_quant else nn.Identity()

        def forward(self, x):
            x = self.input_quant(x)
            both = torch.cat([self.relu(self.conv3(x)), self.relu5(self.conv5(x))], dim=1)
            return self.output_quant(self.fc(torch.flatten(self.relu_merge(self.merge(both)), 1)))

    return Branches()


def average_pooling(bits: int = 4, scale: str = "po2"):
    """Conv -> ReLU -> 2x2 average pooling -> quantizer -> global average pooling -> quantizer, the pooled channels
    being the output (a fully convolutional head)."""
    import brevitas.nn as qnn
    from torch import nn

    weight, signed, unsigned = _quantizers(bits, scale)
    return nn.Sequential(
        qnn.QuantIdentity(act_quant=signed),
        qnn.QuantConv2d(1, 4, 3, padding=1, weight_quant=weight),
        qnn.QuantReLU(act_quant=unsigned),
        nn.AvgPool2d(2),
        qnn.QuantIdentity(act_quant=unsigned),
        nn.AdaptiveAvgPool2d(1),
        qnn.QuantIdentity(act_quant=unsigned),
    )


def image_ops(bits: int = 4, scale: str = "po2"):
    """The image ops of U-Net / FPN / super-resolution graphs in one small network on a non-square image: a skip
    branch concatenated with a max-pooled, convolved and nearest-upsampled one and with the quantized input (a
    Concat of three), a 2x2 average pooling, a pixel shuffle (DepthToSpace) and a global average pooling head."""
    import brevitas.nn as qnn
    import torch
    from torch import nn

    weight, signed, unsigned = _quantizers(bits, scale)

    class ImageOps(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_quant = qnn.QuantIdentity(act_quant=signed)
            self.conv1 = qnn.QuantConv2d(1, 4, 3, padding=1, weight_quant=weight)
            self.relu1 = qnn.QuantReLU(act_quant=unsigned)
            self.conv2 = qnn.QuantConv2d(4, 4, 3, padding=1, weight_quant=weight)
            self.relu2 = qnn.QuantReLU(act_quant=unsigned)
            self.merge = qnn.QuantConv2d(9, 4, 1, weight_quant=weight)
            self.relu3 = qnn.QuantReLU(act_quant=unsigned)
            self.pool_quant = qnn.QuantIdentity(act_quant=unsigned)
            self.expand = qnn.QuantConv2d(4, 16, 3, padding=1, weight_quant=weight)
            self.expand_quant = qnn.QuantIdentity(act_quant=signed)
            self.relu4 = qnn.QuantReLU(act_quant=unsigned)
            self.head_quant = qnn.QuantIdentity(act_quant=unsigned)
            self.fc = qnn.QuantLinear(4, 10, weight_quant=weight)

        def forward(self, x):
            image = self.input_quant(x)
            full = self.relu1(self.conv1(image))
            half = self.relu2(self.conv2(nn.functional.max_pool2d(full, 2)))
            up = nn.functional.interpolate(half, scale_factor=2, mode="nearest")
            both = torch.cat([full, up, image], dim=1)  # three tensors: hls4ml concatenates two at a time
            y = self.pool_quant(nn.functional.avg_pool2d(self.relu3(self.merge(both)), 2))
            y = self.relu4(nn.functional.pixel_shuffle(self.expand_quant(self.expand(y)), 2))
            return self.fc(torch.flatten(self.head_quant(nn.functional.adaptive_avg_pool2d(y, 1)), 1))

    return ImageOps()


def kws_mlp(bits: int = 3, features: int = 490, hidden: int = 64, classes: int = 12):
    """The QONNX zoo's keyword-spotting MLP (finn-examples' MLPerf Tiny KWS) as we know its structure: 8-bit input
    quantizer on the 490 MFCC features, three QuantLinear + BatchNorm + ``bits``-bit QuantReLU, a last QuantLinear to
    12 classes; brevitas's default float scales."""
    import brevitas.nn as qnn
    import brevitas.quant as quant
    from torch import nn

    weight = quant.Int8WeightPerTensorFloat.let(bit_width=bits)
    relu = quant.Uint8ActPerTensorFloat.let(bit_width=bits)
    layers = [qnn.QuantIdentity(act_quant=quant.Int8ActPerTensorFloat)]
    width = features
    for _ in range(3):
        layers += [qnn.QuantLinear(width, hidden, bias=False, weight_quant=weight), nn.BatchNorm1d(hidden)]
        layers.append(qnn.QuantReLU(act_quant=relu))
        width = hidden
    layers.append(qnn.QuantLinear(width, classes, bias=False, weight_quant=weight))
    return nn.Sequential(*layers)


def jet_tagger_mlp(bits: int = 6):
    """The QONNX zoo's QKeras jet tagger (hls4ml's ``three_layer`` model) as a QKeras conversion has it: the float
    input goes straight into the first layer (no input quantizer), 16-64-32-32-5 Dense layers with ``bits``-bit
    power-of-two weights and biases (``quantized_bits(6, 0)``) and ``quantized_relu(6)`` activations; the logits
    (the zoo model's Softmax, a float function no fixed-point type computes exactly, is left out)."""
    import brevitas.nn as qnn
    import brevitas.quant as quant
    from torch import nn

    weight = quant.Int8WeightPerTensorFixedPoint.let(bit_width=bits)
    bias = quant.Int8BiasPerTensorFixedPointInternalScaling.let(bit_width=bits)
    relu = quant.Uint8ActPerTensorFixedPoint.let(bit_width=bits)
    layers, width = [], 16
    for out in (64, 32, 32):
        layers += [qnn.QuantLinear(width, out, bias=True, weight_quant=weight, bias_quant=bias)]
        layers.append(qnn.QuantReLU(act_quant=relu))
        width = out
    layers.append(qnn.QuantLinear(width, 5, bias=True, weight_quant=weight, bias_quant=bias))
    return nn.Sequential(*layers)


def radioml_vgg10(
    bits: int = 8, channels: int = 64, length: int = 1024, convs: int = 7, hidden: int = 128, scale: str = "float"
):
    """The QONNX zoo's RadioML VGG10 (FINN's radio-modulation classifier, ``pretrained_VGG10_w8a8``) as we know its
    structure: an 8-bit input quantizer on I/Q samples (2 x ``length``), ``convs`` x (bias-less QuantConv1d k=3 +
    BatchNorm + ``bits``-bit QuantReLU + MaxPool1d 2), then QuantLinear + BatchNorm + QuantReLU twice and a
    QuantLinear to 24 classes; brevitas's float scales, or power-of-two ones (``scale="po2"``)."""
    import brevitas.nn as qnn
    from torch import nn

    weight, signed, relu = _quantizers(bits, scale)
    layers, width = [qnn.QuantIdentity(act_quant=signed)], 2
    for _ in range(convs):
        layers += [qnn.QuantConv1d(width, channels, 3, padding=1, bias=False, weight_quant=weight)]
        layers += [nn.BatchNorm1d(channels), qnn.QuantReLU(act_quant=relu), nn.MaxPool1d(2)]
        width = channels
    layers.append(nn.Flatten())
    width = channels * (length >> convs)
    for _ in range(2):
        layers += [qnn.QuantLinear(width, hidden, bias=False, weight_quant=weight), nn.BatchNorm1d(hidden)]
        layers.append(qnn.QuantReLU(act_quant=relu))
        width = hidden
    layers.append(qnn.QuantLinear(width, 24, bias=False, weight_quant=weight))
    return nn.Sequential(*layers)


def constant(name: str, values):
    """A float32 initializer ``name`` holding ``values``, for the hand-built graphs below."""
    import numpy as np
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(values, dtype=np.float32), name)


def quant(source: str, output: str, scale: str, signed: int):
    """A ROUND Quant node of the hand-built graphs below (zero point ``zero``, bit width ``bits`` initializers)."""
    from onnx import helper

    return helper.make_node(
        "Quant", [source, scale, "zero", "bits"], [output], name=f"Quant_{output}",
        domain="qonnx.custom_op.general", signed=signed, narrow=0, rounding_mode="ROUND",
    )  # fmt: skip


def export_random(model, input_shape: tuple[int, ...], path: Path, seed: int = 0) -> Path:
    """Random weights (N(0, 0.5): wide enough to use every weight level), activation ranges calibrated on normal
    inputs, brevitas's QONNX export (TorchScript path: quantized biases need it)."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas.graph.calibrate import calibration_mode

    torch.manual_seed(seed)
    for parameter in model.parameters():
        if parameter.dim() > 1:
            torch.nn.init.normal_(parameter, 0.0, 0.5)
    x = torch.randn(64, *input_shape, generator=torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad(), calibration_mode(model):
        model(x)
    with torch.no_grad():
        export_qonnx(model.eval(), x[:1], export_path=str(path), dynamo=False)
    return path


def export_finn(model, input_shape: tuple[int, ...], path: Path) -> Path:
    """A FINN network as brevitas exports it (its own weights: FINN's init, not the generic one above)."""
    import torch
    from brevitas.export import export_qonnx

    with torch.no_grad():
        export_qonnx(model.eval(), torch.rand(1, *input_shape), export_path=str(path), dynamo=False)
    return path


pytest.importorskip("hls4ml")
pytest.importorskip("brevitas_examples")


def _ops(artifact) -> list[str]:
    return [row["op"] for row in artifact.report["per_layer"]]


def test_finn_cnv_structure_compiles_bit_exact_with_a_plain_compile(tmp_path):
    """FINN CNV-2W2A's structure (Q1.7 input pre-scaling, 6 bias-less convs + BatchNorm + 2-bit activations, 3
    linear layers, TensorNorm on the logits) at a small width: io_stream chosen for a conv net, a per-layer
    implementation, the board fit in the report, bit-exact."""
    path = export_finn(finn_network("cnv_2w2a", CNV_SMALL), (3, 32, 32), tmp_path / "cnv.onnx")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact and artifact.report["outputs_compared"] == 200
    assert artifact.report["io_type"] == "io_stream" and artifact.report["strategy"] == "auto"
    layers = [row for row in artifact.report["per_layer"] if row["op"] in ("Conv2D", "Dense")]
    assert len(layers) == 9
    assert all(row["decided_by"] == "auto" and row["parallel_multiplications"] <= 4096 for row in layers)
    assert {row["strategy"] for row in layers} == {"Latency", "Resource"}  # 16x16x9 = 2,304 unroll; 32x16x9 = 4,608 do not
    fit = artifact.report["board_fit"]
    assert fit["capacity"]["DSP"] == 220 and set(fit["estimated"]) == {"LUT", "FF", "DSP", "BRAM_18K"}


def test_finn_sfc_binarized_compiles_bit_exact_with_a_plain_compile(tmp_path):
    """SFC-1W1A: 784-256-256-256-10, bipolar weights and activations; its 784x256 and 256x256 layers need the
    Resource strategy, which auto picks per layer."""
    path = export_finn(finn_network("sfc_1w1a"), (1, 28, 28), tmp_path / "sfc.onnx")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact
    dense = [row for row in artifact.report["per_layer"] if row["op"] == "Dense"]
    assert [row["strategy"] for row in dense] == ["Resource", "Resource", "Resource", "Latency"]
    assert all(row["parallel_multiplications"] <= 4096 for row in dense)


def test_residual_add_of_two_runtime_tensors_is_bit_exact(tmp_path):
    path = export_random(residual_block(), (1, 8, 8), tmp_path / "residual.onnx")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact and "Merge" in _ops(artifact)


def test_residual_add_of_a_float_scale_conv_and_its_skip_is_verified(tmp_path):
    """A conv's float output (float scales) plus the quantized skip, requantized: no fixed-point type holds the sum,
    so the quantizer after it becomes thresholds on an integer sum of the conv's accumulator and the skip's levels
    (LowerToThresholds); the linear layer after it ends the graph in float, so the outputs are verified within the
    bound derived from that tail (they were refused, naming the Add)."""
    path = export_random(residual_block(scale="float"), (1, 8, 8), tmp_path / "residual.onnx")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.report["verified"] and artifact.report["bound"]["float_tail_ops"] == ["Flatten", "Gemm"]
    assert "Merge" in _ops(artifact)


def test_conv1d_network_lowers_with_channels_last_thresholds(tmp_path):
    """RadioML VGG10's structure at a small size (Conv1d + BatchNorm + float-scale ReLU + MaxPool1d, three linear
    layers): the thresholds run channels-last on 1-D maps and hls4ml's 1-D pooling parser is corrected; verified
    within the bound of the float tail (the last layer's scale)."""
    model = radioml_vgg10(channels=4, length=16, convs=2, hidden=8)
    randomize_batchnorm(model.eval())
    path = export_random(model, (2, 16), tmp_path / "vgg.onnx")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.report["verified"] and artifact.report["outputs_compared"] == 200
    assert _ops(artifact).count("Conv1D") == 2 and "Pooling1D" in " ".join(_ops(artifact))


def test_float_input_jet_tagger_is_exact_with_a_declared_input_precision(tmp_path):
    """A QKeras-style MLP computing on its float input: refused by a plain compile, naming the layer and the flag;
    exact against the reference with that input quantizer once ``--input-quant`` declares it."""
    path = export_random(jet_tagger_mlp(), (16,), tmp_path / "jet.onnx")
    with pytest.raises(UnsupportedModelError, match=r"computes on the float model input .*--input-quant"):
        qdeploy.compile(path, target="hls4ml", out=tmp_path / "plain")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200, input_quant="fixed<16,6>")
    assert artifact.bit_exact and artifact.report["input_quant"]["declared"] == "fixed<16,6>"


@pytest.mark.parametrize("scale", ["po2", "float"])
def test_depthwise_and_grouped_convolutions_are_exact(scale, tmp_path):
    """hls4ml's own grouped/depthwise kernels are wrong or missing (PR #1486, #859): qdeploy makes them ordinary
    convolutions with block-diagonal weights, so no Depthwise layer reaches hls4ml. With power-of-two scales the
    firmware is bit-exact; with brevitas's float scales the graph ends in float arithmetic (the last layer's scale
    and float bias), verified within the bound derived from it."""
    path = export_random(separable_convolutions(scale=scale), (1, 8, 8), tmp_path / "separable.onnx")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact if scale == "po2" else artifact.report["verified"]
    convolutions = [op for op in _ops(artifact) if "Conv" in op]  # the 1x1 one is hls4ml's PointwiseConv2D
    assert len(convolutions) == 4 and not any("Depthwise" in op for op in convolutions)


@pytest.mark.parametrize("io_type", ["io_stream", "io_parallel"])
def test_concat_resize_pooling_and_pixel_shuffle_are_exact(io_type, tmp_path):
    """Concat of two branches, nearest 2x upsampling, 2x2 average pooling, DepthToSpace and a global average pooling
    head, on an 8x4 image: plain hls4ml cannot parse Resize ("Could not find the shape for input"), reads global
    pooling's and Resize's shapes as channels-first and has no DepthToSpace; qdeploy hands hls4ml each channels-last,
    with a DepthToSpace layer of its own, and the averages divide by powers of two exactly."""
    path = export_random(image_ops(), (1, 8, 4), tmp_path / "image_ops.onnx")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200, io_type=io_type)
    assert artifact.bit_exact and artifact.report["io_type"] == io_type
    ops = _ops(artifact)
    assert {"Resize", "Concatenate", "DepthToSpace", "GlobalPooling2D"} <= set(ops) and "Transpose" not in ops
    assert ops.count("Pooling2D") == 2 and ops.count("Concatenate") == 2  # max and average pooling; 3 = 2 + 1


def test_float_scale_branches_sharing_a_quantizer_concatenate(tmp_path):
    """Float (non-power-of-two) scales: the quantized input feeds two branches, whose ReLUs share one quantizer, and
    the two are concatenated. The common scale moves behind the Concat (bit for bit), so the 1x1 conv after it takes
    integer levels; verified within the bound of the float tail (the last layer's scale). With a quantizer per
    branch (two scales) the Concat is refused naming the user's node, before anything is written."""
    import onnx

    path = export_random(branches_concatenated(), (1, 8, 8), tmp_path / "shared.onnx")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.report["verified"] and "Concatenate" in _ops(artifact)
    path = export_random(branches_concatenated(shared=False), (1, 8, 8), tmp_path / "two.onnx")
    (concat,) = [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Concat"]
    with pytest.raises(UnsupportedModelError, match=rf"node {concat}: Concat of two runtime tensors .* share one"):
        qdeploy.compile(path, target="hls4ml", out=tmp_path / "two")
    assert_no_output(tmp_path / "two")


def test_residual_through_a_shared_quantizer_is_exact(tmp_path):
    """A ProxylessNAS-style residual: a quantized tensor read by a conv and by a shared quantizer (the identity
    branch), summed. qonnx's channels-last moves rewired only a forked transpose's first reader (the conv read the
    identity branch: NOT EXACT 0/300); each move now sees one reader per transpose (``ForkSafe``)."""
    from tests.targets.wild_corpus import all_cases, export_case

    (case,) = [case for case in all_cases() if case.name == "layer_residual_shared_fixed_4b"]
    artifact = qdeploy.compile(export_case(case, tmp_path), target="hls4ml", out=tmp_path / "fw", verify_samples=300)
    assert artifact.bit_exact and artifact.report["outputs_equal"] == 300


def test_global_average_pooling_at_the_output_is_exact(tmp_path):
    """Average pooling, then a global average pooling whose N, C, 1, 1 output is the model's: hls4ml holds it as a
    vector, and the transpose back to channels-first that the graph keeps there moves no data."""
    path = export_random(average_pooling(), (1, 8, 8), tmp_path / "pooling.onnx")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact and {"Pooling2D", "GlobalPooling2D"} <= set(_ops(artifact))


def test_image_ops_hls4ml_cannot_compute_exactly_are_refused_by_name(tmp_path):
    """Preparation only (no C simulation): bilinear upsampling, and an average pooling of float-scaled values (the
    threshold lowering carries no scale through an average), each refused naming the user's node."""
    import onnx

    from qdeploy.errors import UnsupportedModelError

    path = export_random(concat_resize(mode="bilinear"), (1, 8, 8), tmp_path / "bilinear.onnx")
    (resize,) = [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Resize"]
    with pytest.raises(UnsupportedModelError, match=rf"node {resize}: Resize is not supported .* linear interpolation"):
        qdeploy.compile(path, target="hls4ml", out=tmp_path / "bilinear")
    assert_no_output(tmp_path / "bilinear")
    path = export_random(average_pooling(scale="float"), (1, 8, 8), tmp_path / "float.onnx")
    (pool,) = [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "AveragePool"]
    with pytest.raises(UnsupportedModelError, match=rf"node {pool}: AveragePool of values that carry a float"):
        qdeploy.compile(path, target="hls4ml", out=tmp_path / "float")
    assert_no_output(tmp_path / "float")


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("qkeras_qactivation_16.onnx", "MultiThreshold"),
        ("qkeras_qactivation_0.onnx", "Activation"),
        ("qkeras_qdense2_0.onnx", "Dense"),
    ],
)
def test_qkeras_conversions_compile_bit_exact(name, layer, tmp_path):
    """QKeras conversions ending in an Identity (hls4ml loses that output): a 1-bit signed Quant, which qonnx
    executes as bipolar (+1/-1, not the {-1, 0} its integer range suggests), becomes thresholds on the float input; a
    ReLU on the float input before its quantizer commutes with the derived input type and stays fixed point."""
    from tests.conftest import FIXTURES

    path = FIXTURES.parent / "wild" / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=300)
    assert artifact.bit_exact and layer in _ops(artifact)


def test_scale_before_the_output_transpose_becomes_the_host_epilogue():
    """qonnx's eltwise_chanlast testcase ends ``MultiThreshold -> Mul(scale) -> Transpose`` once prepared: the scalar
    scale moves after the transpose, so the firmware ends in integer levels and the scale runs on the host (it was
    refused naming the inserted ``Quant_29_scale``). Preparation only: no C simulation."""
    from qdeploy.ir import load_model, split_float_epilogue
    from qdeploy.pipeline import RunContext, run_steps
    from qdeploy.targets.hls4ml.steps import STEPS
    from qdeploy.targets.hls4ml.target import Hls4mlTarget
    from tests.conftest import FIXTURES

    path = FIXTURES.parent / "wild" / "eltwise_chanlast_testcase.onnx"
    if not path.exists():
        pytest.skip(f"{path} not found")
    prepared = run_steps(load_model(path), Hls4mlTarget().options({}), STEPS, RunContext())
    firmware, epilogue = split_float_epilogue(prepared)
    assert [node.op_type for node in epilogue.graph.node] == ["Mul"]
    assert [node.op_type for node in firmware.graph.node] == ["Conv", "MultiThreshold", "Transpose"]


def test_strict_fit_refuses_a_design_larger_than_the_board(tmp_path):
    """The estimate of FINN's SFC exceeds a PYNQ-Z2's LUTs: --strict-fit refuses, naming the costliest layers."""
    path = export_finn(finn_network("sfc_1w1a"), (1, 28, 28), tmp_path / "sfc.onnx")
    with pytest.raises(UnsupportedModelError, match=r"estimated resources exceed pynq-z2: LUT [\d,]+ of 53,200 \(most: "):
        qdeploy.compile(path, target="hls4ml", board="pynq-z2", strict_fit=True, out=tmp_path / "fw")
    assert_no_output(tmp_path / "fw")


def _pooling_graph(
    path: Path, op: str, ceil_mode: int, signed: bool = False, kernel: int = 2, pads: tuple[int, ...] = (0, 0, 0, 0)
) -> Path:
    """Quant -> Conv -> ReLU -> unsigned Quant (or, ``signed``: Conv -> signed Quant) -> ``op`` ``kernel``x``kernel``
    stride 2 with ``pads`` (no pads attribute when all are 0, ONNX's default) on a 5x5 image -> Quant."""
    import numpy as np
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    weights = np.random.default_rng(0).integers(-3, 4, (4, 2, 3, 3)) * 0.25
    padding = {"pads": list(pads)} if any(pads) else {}
    nodes = [
        quant("x", "xq", "input_scale", 1),
        helper.make_node("Conv", ["xq", "w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3], name="Conv_0"),
        *([] if signed else [helper.make_node("Relu", ["c"], ["r"], name="Relu_0")]),
        quant("c" if signed else "r", "a", "act_scale", int(signed)),
        helper.make_node(
            op, ["a"], ["p"], kernel_shape=[kernel, kernel], strides=[2, 2], ceil_mode=ceil_mode, name="Pool_0", **padding
        ),
        quant("p", "y", "act_scale", int(signed)),
    ]
    initializers = [
        constant("input_scale", 2.0**-3), constant("act_scale", 2.0**-2), constant("zero", 0.0),
        constant("bits", 4.0), constant("w", weights),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "pooling",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    ModelWrapper(helper.make_model(graph, opset_imports=opsets)).transform(InferShapes()).save(str(path))
    return path


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_pooling_without_pads_prepares_and_ceil_mode_average_is_refused_by_name(op, tmp_path):
    """Preparation only: a pooling that leaves pads to ONNX's default reaches hls4ml channels-last (qonnx's
    conversion used to stop at "Required attribute pads unspecified"); an average with ceil_mode adding a partial
    window at the edge (divided by its real elements), which hls4ml does not pool, is refused naming the node, and
    a max pooling of non-negative values gets zero padding instead."""
    from qdeploy.ir import load_model
    from qdeploy.pipeline import RunContext, run_steps
    from qdeploy.targets.hls4ml.steps import STEPS
    from qdeploy.targets.hls4ml.target import Hls4mlTarget

    options = Hls4mlTarget().options({})
    prepared = run_steps(load_model(_pooling_graph(tmp_path / "floor.onnx", op, 0)), options, STEPS, RunContext())
    (pool,) = [node for node in prepared.graph.node if node.op_type == op]
    assert pool.domain == "qonnx.custom_op.channels_last"
    ceil = load_model(_pooling_graph(tmp_path / "ceil.onnx", op, 1))
    if op == "AveragePool":
        with pytest.raises(UnsupportedModelError, match=r"node Pool_0: AveragePool is not supported .* ceil_mode adds"):
            run_steps(ceil, options, STEPS, RunContext())
        return
    prepared = run_steps(ceil, options, STEPS, RunContext())
    (pad,) = [node for node in prepared.graph.node if node.op_type == "Pad"]
    assert prepared.get_initializer(pad.input[1]).tolist() == [0, 0, 0, 0, 0, 1, 1, 0]  # N, H, W, C: bottom/right


def test_ceil_mode_max_pooling_of_non_negative_values_streams_bit_exact(tmp_path):
    """MaxPool 2x2/2 with ceil_mode on a 5x5 image after a ReLU + unsigned quantizer: the partial edge windows are
    whole windows of a zero-padded image (max with 0 changes nothing when every value is >= 0), streamed."""
    path = _pooling_graph(tmp_path / "ceil.onnx", "MaxPool", 1)
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact and artifact.report["io_type"] == "io_stream"
    ops = _ops(artifact)
    assert ops[ops.index("Pooling2D") - 1] == "ZeroPadding2D"  # the pooling's own, after the conv's


def test_padded_ceil_mode_max_pooling_of_signed_values(tmp_path):
    """MaxPool 3x3/2, padding 1 and ceil_mode on a signed quantizer's values: hls4ml's io_parallel pads a signed type
    with its most negative value (ceil_mode read as end padding), bit-exact, and a plain compile picks io_parallel
    (hls4ml streams only windows that tile the image); io_stream refuses naming the node: it would pad with zeros."""
    path = _pooling_graph(tmp_path / "signed.onnx", "MaxPool", 1, signed=True, kernel=3, pads=(1, 1, 1, 1))
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact and artifact.report["io_type"] == "io_parallel"
    assert "ZeroPadding2D" not in _ops(artifact)
    with pytest.raises(UnsupportedModelError, match=r"node Pool_0: MaxPool .* do not tile the image"):
        qdeploy.compile(path, target="hls4ml", io_type="io_stream", out=tmp_path / "stream")
    assert_no_output(tmp_path / "stream")
    tiled = _pooling_graph(tmp_path / "tiled.onnx", "MaxPool", 1, signed=True)
    with pytest.raises(UnsupportedModelError, match=r"node Pool_0: MaxPool .* its input may be negative \(down to -2\)"):
        qdeploy.compile(tiled, target="hls4ml", out=tmp_path / "tiled")
    assert_no_output(tmp_path / "tiled")


def _trunc_pool_graph(path: Path, trunc: dict, mul: float | None = None) -> Path:
    """Quant -> Conv -> ReLU -> unsigned 4-bit Quant (scale 1/4) -> AveragePool 2x2 [-> Mul ``mul``] -> qonnx Trunc
    (``trunc``: version 1 or 2, scale, out_scale, out_bits, rounding) -> Quant. Version 2 is brevitas's
    TruncAvgPool2d, version 1 with the Mul FINN's average pooling."""
    import numpy as np
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    version = trunc["version"]
    nodes = [
        quant("x", "xq", "input_scale", 1),
        helper.make_node("Conv", ["xq", "w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3], name="Conv_0"),
        helper.make_node("Relu", ["c"], ["r"], name="Relu_0"),
        quant("r", "a", "act_scale", 0),
        helper.make_node("AveragePool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="Pool_0"),
    ]
    if mul is not None:
        nodes.append(helper.make_node("Mul", ["p", "pool_size"], ["m"], name="Mul_0"))
    inputs = ["m" if mul is not None else "p", "t_scale", "zero", "in_bits"]
    inputs += ["out_bits"] if version == 1 else ["out_scale", "out_bits"]
    attributes = {"signed": 0, "narrow": 0} if version == 2 else {}
    nodes += [
        helper.make_node(
            "Trunc", inputs, ["t"], name="Trunc_0", domain="qonnx.custom_op.general",
            rounding_mode=trunc["rounding"], **attributes,
        ),
        quant("t", "y", "act_scale", 1),
    ]  # fmt: skip
    weights = np.random.default_rng(0).integers(-3, 4, (4, 2, 3, 3)) * 0.25
    initializers = [
        constant("input_scale", 2.0**-3), constant("act_scale", 2.0**-2), constant("zero", 0.0),
        constant("bits", 4.0), constant("w", weights), constant("t_scale", trunc["scale"]), constant("in_bits", 6.0),
        constant("out_bits", trunc["out_bits"]), constant("out_scale", trunc.get("out_scale", trunc["scale"])),
        constant("pool_size", mul or 1.0),
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "trunc_pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", version)]
    ModelWrapper(helper.make_model(graph, opset_imports=opsets)).transform(InferShapes()).save(str(path))
    return path


def _prepared(path: Path):
    from qdeploy.ir import load_model
    from qdeploy.pipeline import RunContext, run_steps
    from qdeploy.targets.hls4ml.steps import STEPS
    from qdeploy.targets.hls4ml.target import Hls4mlTarget

    return run_steps(load_model(path), Hls4mlTarget().options({}), STEPS, RunContext())


def _quants_after_pool(prepared) -> list[tuple[float, int, str]]:
    """(scale, bits, rounding) of the Quant chain after the prepared graph's AveragePool."""
    from qdeploy.ir import const_input, node_attr

    (pool,) = [node for node in prepared.graph.node if node.op_type == "AveragePool"]
    chain, tensor = [], pool.output[0]
    while (consumers := prepared.find_consumers(tensor)) and consumers[0].op_type == "Quant":
        node = consumers[0]
        scale, bits = (float(const_input(prepared, node, i)) for i in (1, 3))
        chain.append((scale, int(bits), str(node_attr(node, "rounding_mode"))))
        tensor = node.output[0]
    return chain


def test_brevitas_trunc_average_pooling_is_two_quantizers_bit_exact(tmp_path):
    """qonnx Trunc v2 (brevitas TruncAvgPool2d) with power-of-two scales: the average's round-half-even onto the
    Trunc's input grid (1/8: the mean of four 1/4 levels is on 1/16), then its FLOOR quantizer at the output scale,
    clamped to 3 bits; the first rounding changes results (FLOOR(round(3.5) / 2) = 2, FLOOR(3.5 / 2) = 1)."""
    path = _trunc_pool_graph(
        tmp_path / "trunc.onnx", {"version": 2, "scale": 0.125, "out_scale": 0.25, "out_bits": 3, "rounding": "FLOOR"}
    )
    prepared = _prepared(path)
    assert not [node for node in prepared.graph.node if node.op_type == "Trunc"]
    assert _quants_after_pool(prepared)[:2] == [(0.125, 5, "ROUND"), (0.25, 3, "FLOOR")]  # 0..30 eighths: 5 bits
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact and "Pooling2D" in _ops(artifact)


def test_finn_trunc_average_pooling_is_one_quantizer_bit_exact(tmp_path):
    """FINN's average pooling (AveragePool -> Mul by the window size -> Trunc v1 dropping 2 bits, keeping the scale):
    the Mul and the Trunc's division cancel, leaving one FLOOR quantizer of the average at the input scale, wide
    enough not to clamp (v1 does not)."""
    import onnx

    from tests.targets.wild_corpus import finn_qonnx_trunc_pool

    path = tmp_path / "finn.onnx"
    onnx.save(finn_qonnx_trunc_pool("FLOOR"), str(path))
    prepared = _prepared(path)
    assert not [node for node in prepared.graph.node if node.op_type in ("Trunc", "Mul")]
    assert _quants_after_pool(prepared)[:1] == [(0.25, 4, "FLOOR")]  # the average of 4-bit levels: 4 bits
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact


@pytest.mark.parametrize(
    ("trunc", "mul", "reason"),
    [
        ({"version": 2, "scale": 0.1, "out_scale": 0.4, "out_bits": 4, "rounding": "FLOOR"}, None, "not powers of two"),
        ({"version": 1, "scale": 0.25, "out_bits": 4, "rounding": "FLOOR"}, None, "only a preceding Mul by 4"),
    ],
)
def test_trunc_without_a_fixed_point_form_is_refused_naming_it(trunc, mul, reason, tmp_path):
    path = _trunc_pool_graph(tmp_path / "trunc.onnx", trunc, mul)
    with pytest.raises(UnsupportedModelError, match=rf"node Trunc_0: Trunc has no fixed-point form .*{reason}"):
        qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw")
    assert_no_output(tmp_path / "fw")


def test_dilated_convolution_is_exact_with_the_dilation_in_its_kernel(tmp_path):
    """A 3x3 Conv with dilation 2 (stride 2, padding 2): hls4ml computes convolutions undilated (its stream gave wrong
    values), so the firmware gets the 5x5 kernel with the zeros between the taps written out."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    from qdeploy.ir import node_attr

    def quant(source, output, scale):
        return helper.make_node(
            "Quant", [source, scale, "zero", "bits"], [output], name=f"Quant_{output}",
            domain="qonnx.custom_op.general", signed=1, narrow=0, rounding_mode="ROUND",
        )  # fmt: skip

    nodes = [
        quant("x", "xq", "input_scale"),
        helper.make_node(
            "Conv", ["xq", "w"], ["c"], pads=[2, 2, 2, 2], kernel_shape=[3, 3], strides=[2, 2], dilations=[2, 2],
            name="Conv_0",
        ),
        quant("c", "y", "act_scale"),
    ]  # fmt: skip
    values = {
        "input_scale": 2.0**-3, "act_scale": 2.0**-2, "zero": 0.0, "bits": 4.0,
        "w": np.random.default_rng(0).integers(-3, 4, (4, 2, 3, 3)) * 0.25,
    }  # fmt: skip
    graph = helper.make_graph(
        nodes,
        "dilated",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32), name) for name, v in values.items()],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    path = tmp_path / "dilated.onnx"
    ModelWrapper(helper.make_model(graph, opset_imports=opsets)).transform(InferShapes()).save(str(path))
    (conv,) = [node for node in _prepared(path).graph.node if node.op_type == "Conv"]
    assert list(node_attr(conv, "kernel_shape")) == [5, 5] and list(node_attr(conv, "dilations")) == [1, 1]
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact and artifact.report["io_type"] == "io_stream"


def test_reflect_and_edge_padding_stream_bit_exact(tmp_path):
    """Quant -> reflect Pad -> Conv -> ReLU -> Quant -> edge (replicate) Pad -> Conv -> Quant, as PyTorch's
    padding_mode='reflect'/'replicate' export: hls4ml pads with zeros only, so each Pad is qdeploy's MirrorPad layer,
    computed channels-last (the transposes qonnx leaves after a Pad move above it and cancel)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    rng = np.random.default_rng(0)
    nodes = [
        quant("x", "xq", "input_scale", 1),
        helper.make_node("Pad", ["xq", "pads"], ["xp"], mode="reflect", name="Pad_reflect"),
        helper.make_node("Conv", ["xp", "w1"], ["c1"], kernel_shape=[3, 3], name="Conv_0"),
        helper.make_node("Relu", ["c1"], ["r1"], name="Relu_0"),
        quant("r1", "a1", "act_scale", 0),
        helper.make_node("Pad", ["a1", "pads"], ["ap"], mode="edge", name="Pad_edge"),
        helper.make_node("Conv", ["ap", "w2"], ["c2"], kernel_shape=[3, 3], name="Conv_1"),
        quant("c2", "y", "act_scale", 1),
    ]
    values = {
        "input_scale": 2.0**-3, "act_scale": 2.0**-2, "zero": 0.0, "bits": 4.0,
        "w1": rng.integers(-3, 4, (3, 2, 3, 3)) * 0.25, "w2": rng.integers(-3, 4, (2, 3, 3, 3)) * 0.25,
    }  # fmt: skip
    initializers = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), name) for name, v in values.items()]
    initializers.append(numpy_helper.from_array(np.asarray([0, 0, 1, 2, 0, 0, 2, 1], dtype=np.int64), "pads"))
    graph = helper.make_graph(
        nodes,
        "padded",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    path = tmp_path / "padded.onnx"
    ModelWrapper(helper.make_model(graph, opset_imports=opsets)).transform(InferShapes()).save(str(path))
    prepared = _prepared(path)
    pads = [node for node in prepared.graph.node if node.op_type == "Pad"]
    assert [prepared.get_initializer(node.input[1]).tolist() for node in pads] == [[0, 1, 2, 0, 0, 2, 1, 0]] * 2  # NHWC
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact and artifact.report["io_type"] == "io_stream"
    assert _ops(artifact).count("MirrorPad") == 2


def test_replicate_and_circular_padding_from_brevitas_are_exact(tmp_path):
    """brevitas convs with padding_mode='replicate' (an edge Pad) and 'circular' (torch.onnx writes a Concat of slices
    per axis, rewritten as wrap-mode Pads): every one is qdeploy's MirrorPad layer, no Slice reaches hls4ml."""
    from qdeploy.ir import node_attr
    from tests.targets.wild_corpus import LAYER_KINDS, BrevitasCase, export_case, layer_model

    case = BrevitasCase("replicate_pad", lambda: layer_model("replicate_pad", "fixed", 4), LAYER_KINDS["replicate_pad"][0])
    path = export_case(case, tmp_path)
    prepared = _prepared(path)
    assert not [node for node in prepared.graph.node if node.op_type in ("Slice", "Concat")]
    assert sorted(node_attr(node, "mode") for node in prepared.graph.node if node.op_type == "Pad") == [
        "edge",
        "wrap",
        "wrap",
    ]
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=200)
    assert artifact.bit_exact and _ops(artifact).count("MirrorPad") == 3
