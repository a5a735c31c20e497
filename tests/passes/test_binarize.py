"""Binarisation: exact +-alpha forward values, BiPer's omega*cos(omega*w) gradient, training that lowers the loss,
QONNX export equal to the torch module on the golden executor and on onnxruntime, bad input refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

import qdeploy
from qdeploy.cli import EXIT_ERROR, main
from qdeploy.errors import QDeployError, UnsupportedModelError
from qdeploy.passes.binarize import BinaryActivation, QConv2d, QLinear, binarize

EPOCHS = 4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models train faster on one thread, and the suite runs two workers on two cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Flatten()]
    width = 64
    for _ in range(3):
        layers += [nn.Linear(width, 32), nn.BatchNorm1d(32), nn.ReLU()]
        width = 32
    return nn.Sequential(*layers, nn.Linear(32, 10))


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
    )


def _torch(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def trained(data):
    """(method, model name) -> frozen binarised module, trained once for this file."""
    cache = {}

    def get(method: str, name: str):
        if (method, name) not in cache:
            if name == "mlp":
                cache[method, name] = binarize(_mlp(), data.x_train, data.y_train, method=method, epochs=EPOCHS)
            else:  # the CNN only has to export exactly: a short run keeps the test fast
                cache[method, name] = binarize(_cnn(), data.x_train[:384], data.y_train[:384], method=method, epochs=2)
        return cache[method, name]

    return get


@pytest.mark.parametrize("method", ["biper", "ste"])
@pytest.mark.parametrize("kind", [QLinear, QConv2d])
def test_forward_values_are_exactly_plus_or_minus_alpha(method, kind):
    torch.manual_seed(1)
    layer = kind(nn.Linear(6, 5) if kind is QLinear else nn.Conv2d(6, 5, 1), method, omega=30.0)
    layer.bias = None
    layer.alpha = nn.Parameter(torch.rand(5) + 0.1)
    probe = torch.eye(6) if kind is QLinear else torch.eye(6).view(6, 6, 1, 1)
    out = layer.eval()(probe).reshape(6, 5)  # row i: weight column i times alpha
    latent = torch.sin(30.0 * layer.weight) if method == "biper" else layer.weight
    signs = torch.where(latent.reshape(5, 6) >= 0, 1.0, -1.0).T
    assert torch.equal(out, signs * layer.alpha.detach())
    # the frozen layer (what is exported) keeps exactly the same values
    layer.freeze()
    assert torch.equal(layer(probe).reshape(6, 5), signs * layer.alpha.detach())


def test_binary_activation_is_plus_or_minus_one_with_zero_to_plus_one():
    a = torch.tensor([[-2.0, -1e-30, 0.0, 1e-30, 3.0]])
    for method in ("biper", "ste"):
        act = BinaryActivation(method)
        expected = torch.tensor([[-1.0, -1.0, 1.0, 1.0, 1.0]])
        assert torch.equal(act.eval()(a), expected)
        assert torch.equal(act.train()(a), expected)  # BiPer's training-time normalization never flips a sign


def test_biper_gradient_is_omega_cos_omega_w_times_the_alpha_scaled_upstream_gradient():
    torch.manual_seed(2)
    omega = 20.0
    layer = QLinear(nn.Linear(7, 3, bias=False), "biper", omega=omega)
    layer.alpha = nn.Parameter(torch.rand(3) + 0.5)
    x = torch.where(torch.randn(5, 7) >= 0, 1.0, -1.0)
    upstream = torch.randn(5, 3)
    layer(x).backward(upstream)
    w = layer.weight.detach()
    expected = ((upstream * layer.alpha.detach()).T @ x) * omega * torch.cos(omega * w)
    torch.testing.assert_close(layer.weight.grad, expected, rtol=1e-6, atol=1e-7)
    # and it is not the sign-STE gradient: the sine's derivative changes sign with the period
    ste = ((upstream * layer.alpha.detach()).T @ x) * (w.abs() <= 1)
    assert not torch.allclose(layer.weight.grad, ste)


def test_sign_ste_gradient_is_clipped_identity():
    torch.manual_seed(3)
    layer = QLinear(nn.Linear(4, 2, bias=False), "ste", omega=30.0)
    with torch.no_grad():
        layer.weight[0, 0] = 1.5  # outside [-1, 1]: no gradient
    layer.alpha = nn.Parameter(torch.tensor([0.5, 2.0]))
    x, upstream = torch.randn(3, 4), torch.randn(3, 2)
    layer(x).backward(upstream)
    expected = (upstream * layer.alpha.detach()).T @ x
    expected[0, 0] = 0.0
    torch.testing.assert_close(layer.weight.grad, expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method", ["biper", "ste"])
def test_training_lowers_the_loss_and_learns(trained, data, method):
    model = trained(method, "mlp")
    history = model.history
    assert len(history) == EPOCHS
    if method == "biper":  # each stage lowers its own loss (stage 2 starts from the binarised stage-1 weights)
        assert history[1] < history[0] and history[3] < history[2]
    assert history[-1] < 0.6 * history[0]
    accuracy = float((_torch(model, data.x_test).argmax(1) == data.y_test).mean())
    assert accuracy > 0.6, accuracy


@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("method", ["biper", "ste"])
def test_export_equals_torch_on_golden_and_onnxruntime(trained, data, tmp_path, method, name):
    model = trained(method, name)
    graph = qdeploy.export(model, data.x_test[:1])
    ops = [node.op_type for node in graph.graph.node]
    binary = model.binary_layers()
    activations = [m for m in model.modules() if isinstance(m, BinaryActivation)]
    # one BipolarQuant per binary weight tensor and one per binarised activation
    assert ops.count("BipolarQuant") == len(binary) + len(activations), ops
    for node in graph.graph.node:
        if node.op_type == "BipolarQuant" and graph.get_initializer(node.input[0]) is not None:
            assert set(np.unique(graph.get_initializer(node.input[0]))) <= {-1.0, 1.0}
    alphas = [graph.get_initializer(n.input[1]) for n in graph.graph.node if n.op_type == "Mul"]
    for layer in binary:
        assert any(a is not None and np.array_equal(a.reshape(-1), layer.alpha.detach().numpy()) for a in alphas)
    rng = np.random.default_rng(0)
    x = np.concatenate([data.x_test, rng.uniform(-1, 2, size=(64, *data.x_test.shape[1:])).astype(np.float32)])
    expected = _torch(model, x)
    assert np.array_equal(qdeploy.run_golden(graph, x), expected)
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=data.x_test[:200], verify_samples=200)
    assert artifact.report["bit_exact"], artifact.summary()
    assert artifact.report["outputs_compared"] == 400
    # the binary weights reach onnxruntime as int8 +-1 behind DequantizeLinear (integer form, no float folding)
    lowered = onnx.load(str(tmp_path / "ort" / "model.onnx"))
    int8 = [numpy_helper.to_array(t) for t in lowered.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sum(a.size > 1 and set(np.unique(a)) == {-1, 1} for a in int8) == len(binary)


def test_binarize_all_layers_exports_exactly(data):
    model = binarize(_mlp(), data.x_train[:256], data.y_train[:256], method="ste", epochs=1, keep_first_last=False)
    assert len(model.binary_layers()) == len(model.qlayers()) == 4
    graph = qdeploy.export(model, data.x_test[:1])
    assert not any(node.op_type == "Quant" and graph.get_initializer(node.input[0]) is not None for node in graph.graph.node)
    assert np.array_equal(qdeploy.run_golden(graph, data.x_test), _torch(model, data.x_test))


def test_the_callers_model_is_not_modified(data):
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    binarize(model, data.x_train[:128], data.y_train[:128], method="ste", epochs=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.Linear) for m in model.modules())


class _LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 8)
        self.head = nn.Linear(8, 10)


class _FunctionalRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(64, 16), nn.Linear(16, 16), nn.Linear(16, 10)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x.flatten(1))))))


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        (_mlp, {"omega": 0.0}, "omega=0.0 must be a positive number"),
        (_mlp, {"omega": -20.0}, "omega=-20.0 must be a positive number"),
        (_mlp, {"omega": float("nan")}, "must be a positive number"),
        (_mlp, {"method": "xnor"}, "method 'xnor' must be one of biper, ste"),
        (lambda: nn.Sequential(nn.Flatten(), nn.ReLU()), {}, "nothing to binarise"),
        (lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10)), {}, "nothing to binarise"),
        (
            lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.Linear(8, 10)),
            {},
            "layer '2' (LayerNorm) cannot be binarised",
        ),
        (
            lambda: nn.Sequential(nn.Conv1d(1, 4, 3), nn.Flatten(), nn.Linear(248, 8), nn.Linear(8, 10)),
            {},
            "layer '0' (Conv1d) cannot be binarised",
        ),
        (_FunctionalRelu, {}, "activation function 'relu'"),
        (
            lambda: nn.Sequential(nn.Flatten(), nn.BatchNorm1d(64), nn.Linear(64, 8), nn.Linear(8, 8), nn.Linear(8, 10)),
            {},
            "BatchNorm '1' does not directly follow",
        ),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(data, model, options, message):
    with pytest.raises(QDeployError, match=message.replace("(", r"\(").replace(")", r"\)")):
        binarize(model(), data.x_train[:64], data.y_train[:64], epochs=1, **options)


def test_untraceable_layer_type_is_named():
    with pytest.raises(UnsupportedModelError, match="binarize could not trace"):
        binarize(_LSTMNet(), np.zeros((8, 8), np.float32), np.zeros(8, np.int64), epochs=1)


FACTORY = """
from torch import nn

def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 16),
                         nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))

def lstm():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.LSTM(16, 16), nn.Linear(16, 10))
"""


@pytest.fixture
def cli_files(tmp_path, data):
    factory = tmp_path / "models.py"
    factory.write_text(FACTORY)
    train = tmp_path / "train.npz"
    np.savez(train, x=data.x_train[:256], y=data.y_train[:256])
    return factory, train


def test_cli_binarize_writes_a_bipolar_qonnx_model(capsys, tmp_path, cli_files):
    factory, train = cli_files
    out = tmp_path / "bnn.onnx"
    args = ["binarize", f"{factory}:mlp", "--data", train, "--omega", "20", "--epochs", "2", "-o", out, "-q"]
    assert main([str(a) for a in args]) == 0
    assert "BiPer omega=20" in capsys.readouterr().out
    graph = qdeploy.load(out)
    assert [n.op_type for n in graph.graph.node].count("BipolarQuant") == 3  # 1 binary layer, 2 activations


@pytest.mark.parametrize(
    ("factory_name", "extra", "message"),
    [
        ("mlp", ["--omega", "-1"], "omega=-1.0 must be a positive number"),
        ("lstm", [], "layer '2' (LSTM) cannot be binarised"),
        ("mlp", ["--binarize-all", "--first-last-bits", "1"], "first_last_bits=1 must be 2-8"),
    ],
)
def test_cli_bad_input_exits_non_zero_without_output(capsys, tmp_path, cli_files, factory_name, extra, message):
    factory, train = cli_files
    out = tmp_path / "bnn.onnx"
    args = ["binarize", f"{factory}:{factory_name}", "--data", train, "--epochs", "1", "-o", out, "-q", *extra]
    assert main([str(a) for a in args]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("qdeploy: error:") and message in err and err.count("\n") == 1, err
    assert not out.exists() and not list(tmp_path.glob("*.onnx"))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_binarised_model_equals_torch_on_hls4ml(trained, data, tmp_path, name):
    """XNOR-popcount's exact equivalent in firmware: +-1 integer weights, binary activations as thresholds."""
    pytest.importorskip("hls4ml")
    model = trained("biper", name)
    graph = qdeploy.export(model, data.x_test[:1])
    # the MLP fits the Latency strategy; the CNN's first conv allows reuse factors up to 9 (1x3x3)
    options = {"strategy": "Resource", "reuse_factor": 8} if name == "cnn" else {}
    artifact = qdeploy.compile(graph, target="hls4ml", out=tmp_path / "fw", data=data.x_test[:200], **options)
    assert artifact.bit_exact and artifact.report["outputs_compared"] == 1200, artifact.summary()
    assert np.array_equal(artifact.predict(data.x_test[:100]), _torch(model, data.x_test[:100]))
    assert "MultiThreshold" in [row["op"] for row in artifact.report["per_layer"]]
