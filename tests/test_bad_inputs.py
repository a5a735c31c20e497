"""The bad-input catalogue (issue 17, item 6): each bad model, data file, output path, config or flag ends in exit
code 1 with exactly one ``qdeploy: error:`` line naming the node, initializer, file or key as the user wrote it, and
nothing written. Cases are data: a builder that writes the bad input and returns the command line and the fragments
the message must contain."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from qdeploy.cli import EXIT_ERROR
from tests.conftest import FIXTURES
from tests.targets.helpers import assert_no_output
from tests.test_cli import assert_one_line_error, run_cli

# -- the models the edits start from ------------------------------------------------------------------------------------

ZOO = {path.stem: path for path in sorted(FIXTURES.glob("*.onnx"))}
MODELS = ("digits_mlp_w4a8", *ZOO)


@pytest.fixture(scope="module")
def models(mlp_w4a8) -> dict[str, onnx.ModelProto]:
    found = {name: onnx.load(str(path)) for name, path in ZOO.items()}
    return {"digits_mlp_w4a8": onnx.ModelProto.FromString(mlp_w4a8[1].model.SerializeToString()), **found}


def _initializer(model: onnx.ModelProto, name: str) -> TensorProto:
    return next(init for init in model.graph.initializer if init.name == name)


def _set(model: onnx.ModelProto, name: str, values) -> None:
    init = _initializer(model, name)
    old = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array(np.broadcast_to(np.asarray(values, old.dtype), old.shape).copy(), name))


def _quantizers(model: onnx.ModelProto, weights: bool) -> list[onnx.NodeProto]:
    """Quant nodes quantizing an initializer (weights) or a runtime tensor (activations)."""
    constants = {init.name for init in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "Quant" and (n.input[0] in constants) == weights]


def _attribute(node: onnx.NodeProto, name: str) -> onnx.AttributeProto:
    return next(a for a in node.attribute if a.name == name)


# Each edit changes the model in place and returns the fragments the refusal must name.
Edit = Callable[[onnx.ModelProto], tuple[str, ...]]


def weight_value(value: float) -> Edit:
    def edit(model):
        name = _quantizers(model, weights=True)[0].input[0]
        values = numpy_helper.to_array(_initializer(model, name)).copy()
        values.flat[3] = value
        _set(model, name, values)
        return (f"initializer {name}",)

    return edit


def scale_value(value: float, weights: bool) -> Edit:
    def edit(model):
        node = _quantizers(model, weights)[0]
        _set(model, node.input[1], value)
        return (f"node {node.name}", "scale")

    return edit


def bit_width(value: float) -> Edit:
    def edit(model):
        node = _quantizers(model, weights=False)[0]
        _set(model, node.input[3], value)
        return (f"node {node.name}", "bit width")

    return edit


def non_constant_scale(model):
    node = _quantizers(model, weights=False)[-1]
    node.input[1] = model.graph.input[0].name
    return (f"node {node.name}", "scale")


def non_constant_bit_width(model):
    node = _quantizers(model, weights=False)[0]
    node.input[3] = node.input[0]
    return (f"node {node.name}", "bit width", "computed at run time")


def second_output(model):
    model.graph.output.append(helper.make_tensor_value_info("extra_out", TensorProto.FLOAT, None))
    model.graph.node[-1].output.append("extra_out")
    return ("2 outputs", "single-input single-output")


def second_input(model):
    model.graph.input.append(helper.make_tensor_value_info("extra_in", TensorProto.FLOAT, [1, 3]))
    return ("2 inputs", "single-input single-output")


def dynamic_shape(model):
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[len(dims) - 1].dim_param = "width"
    for info in list(model.graph.value_info):  # the stale annotations would contradict the declared input first
        model.graph.value_info.remove(info)
    return (model.graph.input[0].name, "dynamic or unknown shape")


def unknown_op(model):
    node = _quantizers(model, weights=False)[0]
    node.op_type, node.domain = "Frobnicate", ""
    return (node.name, "Frobnicate")


def unknown_custom_op(model):
    node = _quantizers(model, weights=False)[0]
    node.op_type, node.domain = "Frobnicate", "qonnx.custom_op.general"
    return (node.name, "Frobnicate", "qonnx.custom_op.general")


def unknown_rounding_mode(model):
    node = _quantizers(model, weights=False)[0]
    _attribute(node, "rounding_mode").s = b"STOCHASTIC"
    return (f"node {node.name}", "STOCHASTIC")


def missing_signed(model):
    node = _quantizers(model, weights=False)[0]
    node.attribute.remove(_attribute(node, "signed"))
    return (f"node {node.name}", "signed")


def non_utf8_attribute(model):
    node = _quantizers(model, weights=False)[0]
    _attribute(node, "rounding_mode").s = b"\xff\xfe"
    return (f"node {node.name}", "UTF-8")


def quantizer_without_bit_width(model):
    node = _quantizers(model, weights=False)[0]
    del node.input[3]
    return (f"node {node.name}", "4 inputs")


def deleted_initializer(model):
    node = _quantizers(model, weights=True)[0]
    model.graph.initializer.remove(_initializer(model, node.input[1]))
    for info in list(model.graph.input):  # older exporters list initializers as graph inputs too
        if info.name == node.input[1]:
            model.graph.input.remove(info)
    return (node.input[1], "no node, initializer or graph input")


def undefined_element_type(model):
    name = _quantizers(model, weights=True)[0].input[0]
    _initializer(model, name).data_type = 99
    return (f"initializer {name}", "element type 99")


def truncated_initializer(model):
    name = _quantizers(model, weights=True)[0].input[0]
    init = _initializer(model, name)
    raw = numpy_helper.to_array(init).astype(np.float32).tobytes()
    del init.float_data[:]
    init.data_type, init.raw_data = TensorProto.FLOAT, raw[: len(raw) // 2]
    return (f"initializer {name}", "cannot be decoded")


def integer_graph_input(model):
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT8
    return (f"graph input {model.graph.input[0].name}", "INT8", "float")


def cycle(model):
    first, last = model.graph.node[0], model.graph.node[-1]
    first.input[0] = last.output[0]
    return ("cycle",)


def nonexistent_opset(model):
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = 10_000
    return ("opset 10000", "does not exist")


def foreign_domain(model):
    node = _quantizers(model, weights=False)[0]
    node.domain = "os"
    return (f"node {node.name}", "'os'", "nothing was imported")


#: edits that leave a graph ``inspect`` can still describe (a QONNX scale may be computed at run time, a shape may be
#: symbolic); only compiling it is refused
COMPILE_ONLY = {"non_constant_scale", "dynamic_shape"}

MODEL_EDITS: dict[str, Edit] = {
    "nan_weight": weight_value(np.nan),
    "inf_weight": weight_value(np.inf),
    "nan_weight_scale": scale_value(np.nan, weights=True),
    "inf_activation_scale": scale_value(np.inf, weights=False),
    "zero_activation_scale": scale_value(0.0, weights=False),
    "negative_weight_scale": scale_value(-0.25, weights=True),
    "bit_width_0": bit_width(0.0),
    "bit_width_fraction": bit_width(2.5),
    "bit_width_nan": bit_width(np.nan),
    "bit_width_65": bit_width(65.0),
    "bit_width_1e30": bit_width(1e30),  # once an endless 2**width
    "non_constant_scale": non_constant_scale,
    "non_constant_bit_width": non_constant_bit_width,
    "second_output": second_output,
    "second_input": second_input,
    "dynamic_shape": dynamic_shape,
    "unknown_standard_op": unknown_op,
    "unknown_custom_op": unknown_custom_op,
    "unknown_rounding_mode": unknown_rounding_mode,
    "missing_signed_attribute": missing_signed,
    "non_utf8_attribute": non_utf8_attribute,
    "quantizer_without_bit_width": quantizer_without_bit_width,
    "deleted_initializer": deleted_initializer,
    "undefined_element_type": undefined_element_type,
    "truncated_initializer": truncated_initializer,
    "integer_graph_input": integer_graph_input,
    "cycle": cycle,
    "nonexistent_opset": nonexistent_opset,
    "foreign_domain": foreign_domain,
}


@pytest.mark.parametrize("command", ["compile", "inspect"])
@pytest.mark.parametrize("source", MODELS)
@pytest.mark.parametrize("edit", list(MODEL_EDITS))
def test_malformed_model_is_refused_naming_what(capsys, tmp_path, models, edit, source, command):
    if command == "inspect" and edit in COMPILE_ONLY:
        pytest.skip("inspect describes this graph; only compiling it is refused")
    model = onnx.ModelProto.FromString(models[source].SerializeToString())
    fragments = MODEL_EDITS[edit](model)
    path = tmp_path / f"{source}.onnx"
    path.write_bytes(model.SerializeToString())
    out = tmp_path / "out"
    argv = ["compile", path, "--target", "onnxruntime", "--samples", "20", "-o", out] if command == "compile" else [
        "inspect", path
    ]  # fmt: skip
    code, _, err = run_cli(capsys, *argv, "-q")
    assert code == EXIT_ERROR, err
    assert_one_line_error(err, *fragments)
    assert "unexpected" not in err
    assert_no_output(out)


def test_bit_width_40_compiles_bit_exact(capsys, tmp_path, models):
    """40 bits is a valid QONNX width (not a refusal): on the input quantizer it compiles and verifies bit-exact."""
    model = onnx.ModelProto.FromString(models["digits_mlp_w4a8"].SerializeToString())
    node = _quantizers(model, weights=False)[0]
    _set(model, node.input[3], 40.0)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    code, out, err = run_cli(capsys, "compile", path, "--samples", "50", "-o", tmp_path / "out", "-q")
    assert code == 0, err
    assert "bit-exact: " in out and "result: EXACT" in out


# -- files that are not models ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileCase:
    content: bytes | None  # None: the file does not exist; b"<dir>": a folder
    fragments: tuple[str, ...]


def _truncated_zoo_model() -> bytes:
    data = next(iter(ZOO.values())).read_bytes()
    return data[: len(data) // 3]


MODEL_FILES = {
    "missing": FileCase(None, ("does not exist",)),
    "empty": FileCase(b"", ("has no graph nodes",)),
    "garbage_text": FileCase(b"hello, this is not onnx\n", ("is not a readable ONNX model",)),
    "garbage_bytes": FileCase(bytes(range(256)) * 4, ("is not a readable ONNX model",)),
    "truncated": FileCase(_truncated_zoo_model(), ("is not a readable ONNX model",)),
    "folder": FileCase(b"<dir>", ("is a folder",)),
    "numpy_file": FileCase(b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}", ("is not a readable ONNX model",)),
}


@pytest.mark.parametrize("command", ["compile", "inspect"])
@pytest.mark.parametrize("case", list(MODEL_FILES))
def test_model_file_that_is_not_a_model(capsys, tmp_path, case, command):
    given = MODEL_FILES[case]
    path = tmp_path / "model.onnx"
    if given.content == b"<dir>":
        path.mkdir()
    elif given.content is not None:
        path.write_bytes(given.content)
    argv = ["compile", path, "-o", tmp_path / "out"] if command == "compile" else ["inspect", path]
    code, _, err = run_cli(capsys, *argv, "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "model.onnx", *given.fragments)
    assert_no_output(tmp_path / "out")


EXTERNAL_DATA = {  # where a crafted model says an initializer's bytes are, and what the refusal says
    "parent_folder": ("../secret.bin", ("initializer w", "'../secret.bin'", "outside the model's folder")),
    "absolute_path": ("<abs>", ("initializer w", "secret.bin", "outside the model's folder")),
    "link_out": ("link.bin", ("initializer w", "'link.bin'", "outside the model's folder")),
    "missing_file": ("weights.onnx.data", ("initializer w", "'weights.onnx.data'", "copy the model together")),
}


@pytest.mark.parametrize("command", ["compile", "inspect"])
@pytest.mark.parametrize("case", list(EXTERNAL_DATA))
def test_external_weight_data_must_be_a_file_beside_the_model(capsys, tmp_path, case, command):
    """A model file is data: its external weight data may name only files in its own folder (nothing is read from an
    absolute path, through ``..`` or a link out)."""
    location, fragments = EXTERNAL_DATA[case]
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "link.bin").symlink_to(secret)
    tensor = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    where = str(secret) if location == "<abs>" else location
    for key, value in (("location", where), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"], name="Add_0")],
        "crafted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [tensor],
    )
    path = folder / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    out = tmp_path / "out"
    argv = ["compile", path, "--target", "onnxruntime", "-o", out] if command == "compile" else ["inspect", path]
    code, _, err = run_cli(capsys, *argv, "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, *fragments)
    assert_no_output(out)


# -- verification data --------------------------------------------------------------------------------------------------


def _npz(path: Path, **arrays) -> None:
    np.savez(path, **arrays)


DATA_FILES: dict[str, tuple[str, Callable[[Path], None], tuple[str, ...]]] = {
    "nan": ("x.npy", lambda p: np.save(p, np.full((4, 1, 8, 8), np.nan, np.float32)), ("NaN or Inf", "sample 0")),
    "inf_in_sample_2": (
        "x.npy",
        lambda p: np.save(p, np.where(np.arange(4)[:, None, None, None] == 2, np.inf, np.zeros((4, 1, 8, 8)))),
        ("NaN or Inf", "sample 2"),
    ),
    "wrong_shape": ("x.npy", lambda p: np.save(p, np.zeros((4, 3, 3), np.float32)), ("per-sample shape (3, 3)",)),
    "no_batch": ("x.npy", lambda p: np.save(p, np.float32(1.0)), ("per-sample shape ()", "batch dimension first")),
    "empty_batch": ("x.npy", lambda p: np.save(p, np.zeros((0, 1, 8, 8), np.float32)), ("is empty",)),
    "strings": ("x.npy", lambda p: np.save(p, np.array(["a", "b"])), ("x.npy", "numeric inputs are required")),
    "objects": ("x.npy", lambda p: np.save(p, np.array([{}, None], dtype=object)), ("x.npy", "could not be read")),
    "npz_without_x": ("x.npz", lambda p: _npz(p, a=np.zeros(3), b=np.zeros(3)), ("x.npz", "none named 'x'")),
    "garbage": ("x.npz", lambda p: p.write_bytes(b"not a zip"), ("x.npz", "could not be read")),
    "empty_file": ("x.npy", lambda p: p.write_bytes(b""), ("x.npy", "could not be read")),
    "text_suffix": ("x.csv", lambda p: p.write_text("1,2,3\n"), ("x.csv", "is not .npy or .npz")),
    "missing": ("x.npy", lambda p: None, ("x.npy", "does not exist")),
}


@pytest.mark.parametrize("case", list(DATA_FILES))
def test_bad_verification_data(capsys, tmp_path, models, case):
    name, write, fragments = DATA_FILES[case]
    model = tmp_path / "m.onnx"
    model.write_bytes(models["digits_mlp_w4a8"].SerializeToString())
    data = tmp_path / name
    write(data)
    code, _, err = run_cli(capsys, "compile", model, "--data", data, "--samples", "10", "-o", tmp_path / "out", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, *fragments)
    assert_no_output(tmp_path / "out")


# -- output paths, configuration and flags ------------------------------------------------------------------------------

CONFIGS = {
    "python_tag.yaml": ("target: !!python/object/apply:os.system ['echo owned']\n", ("python_tag.yaml",)),
    "unknown_key.yaml": ("target: onnxruntime\nreuse: 2\n", ("unknown key 'reuse'",)),
    "typo_in_target_table.yaml": ("target: onnxruntime\nhls4ml:\n  reuse: 2\n", ("[hls4ml]", "reuse")),
    "wrong_type.yaml": ("verify_samples: many\n", ("verify_samples", "many")),
    "unknown_target.yaml": ("target: tpu\n", ("unknown target 'tpu'",)),
    "bad_input_quant.yaml": ("input_quant: fixed<4>\n", ("input_quant", "fixed<4>")),
    "garbage.toml": ("target = [[[\n", ("garbage.toml",)),
    "list_at_top.yaml": ("- target\n- onnxruntime\n", ("list_at_top.yaml",)),
    "missing.yaml": (None, ("missing.yaml",)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_bad_config_file(capsys, tmp_path, models, name):
    text, fragments = CONFIGS[name]
    model = tmp_path / "m.onnx"
    model.write_bytes(models["digits_mlp_w4a8"].SerializeToString())
    config = tmp_path / name
    if text is not None:
        config.write_text(text)
    code, _, err = run_cli(capsys, "compile", model, "--config", config, "-o", tmp_path / "out", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, *fragments)
    assert_no_output(tmp_path / "out")


FLAGS = {
    "board_for_onnxruntime": (["--board", "pynq-z2"], ("--board", "hls4ml", "--target hls4ml")),
    "reuse_factor_for_onnxruntime": (["--reuse-factor", "4"], ("--reuse-factor", "hls4ml")),
    "device_for_onnxruntime": (["--device", "heavy-hex"], ("--device", "quantum")),
    "input_quant_without_width": (["--input-quant", "fixed<4>"], ("'fixed<4>'", "is not a precision")),
    "input_quant_word": (["--input-quant", "banana"], ("'banana'", "is not a precision")),
    "input_quant_int3x": (["--input-quant", "int3x"], ("'int3x'",)),
    "unknown_target": (["--target", "tpu"], ("unknown target 'tpu'",)),
}


@pytest.mark.parametrize("case", list(FLAGS))
def test_bad_flags(capsys, tmp_path, models, case):
    flags, fragments = FLAGS[case]
    model = tmp_path / "m.onnx"
    model.write_bytes(models["digits_mlp_w4a8"].SerializeToString())
    code, _, err = run_cli(capsys, "compile", model, *flags, "-o", tmp_path / "out", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, *fragments)
    assert_no_output(tmp_path / "out")


def test_existing_folder_that_is_not_an_output_is_left_alone(capsys, tmp_path, models):
    model = tmp_path / "m.onnx"
    model.write_bytes(models["digits_mlp_w4a8"].SerializeToString())
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    code, _, err = run_cli(capsys, "compile", model, "-o", out, "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "mine", "exists and is not a qdeploy output")
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_output_path_that_is_a_file(capsys, tmp_path, models):
    model = tmp_path / "m.onnx"
    model.write_bytes(models["digits_mlp_w4a8"].SerializeToString())
    out = tmp_path / "notes.txt"
    out.write_text("keep")
    code, _, err = run_cli(capsys, "compile", model, "-o", out, "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "notes.txt")
    assert out.read_text() == "keep"


def test_output_folder_under_a_file(capsys, tmp_path, models):
    """-o whose parent is a file cannot be created (as an unwritable folder, also for root)."""
    model = tmp_path / "m.onnx"
    model.write_bytes(models["digits_mlp_w4a8"].SerializeToString())
    (tmp_path / "notes.txt").write_text("keep")
    code, _, err = run_cli(capsys, "compile", model, "-o", tmp_path / "notes.txt" / "out", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "notes.txt")
    assert "unexpected" not in err
