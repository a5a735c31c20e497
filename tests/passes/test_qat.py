"""QAT: lowers the loss, recovers accuracy PTQ loses, resumes exactly, exports and compiles bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import qdeploy
from qdeploy.cli import EXIT_ERROR, main
from qdeploy.errors import QDeployError
from qdeploy.frontend import torch_forward
from qdeploy.passes.qat import qat_train
from tests.conftest import ROOT


def _accuracy(qmodel, data) -> float:
    return float((torch_forward(qmodel, data.x_test).argmax(1) == data.y_test).mean())


def test_qat_lowers_the_loss_and_beats_ptq_at_low_bits(float_mlp, data):
    ptq = qdeploy.quantize(float_mlp, data.x_train[:512], weight_bits=2, act_bits=2, trainable_scales=True)
    ptq_accuracy = _accuracy(ptq, data)
    trained, losses = qat_train(ptq, data.x_train, data.y_train, epochs=5)
    assert losses[-1] < 0.8 * losses[0]
    assert _accuracy(trained, data) > ptq_accuracy + 0.1


def test_resume_from_checkpoint_equals_an_uninterrupted_run(float_mlp, data, tmp_path):
    def fresh():
        return qdeploy.quantize(float_mlp, data.x_train[:256], weight_bits=4, act_bits=4, trainable_scales=True)

    straight, _ = qat_train(fresh(), data.x_train, data.y_train, epochs=2)
    checkpoint = tmp_path / "qat.pt"
    qat_train(fresh(), data.x_train, data.y_train, epochs=1, checkpoint=checkpoint)
    assert checkpoint.exists() and not (tmp_path / "qat.pt.tmp").exists()
    resumed, losses = qat_train(fresh(), data.x_train, data.y_train, epochs=2, checkpoint=checkpoint, resume=True)
    assert len(losses) == 2
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_resume_without_checkpoint_and_bad_labels_are_refused(float_mlp, data, tmp_path):
    qmodel = qdeploy.quantize(float_mlp, data.x_train[:64])
    with pytest.raises(QDeployError, match="cannot resume"):
        qat_train(qmodel, data.x_train, data.y_train, checkpoint=tmp_path / "none.pt", resume=True)
    with pytest.raises(QDeployError, match="10 inputs but 9 labels"):
        qat_train(qmodel, data.x_train[:10], data.y_train[:9])


@pytest.mark.parametrize("optimizer", ["adamw4bit"])
def test_qat_model_compiles_bit_exactly(float_cnn, data, tmp_path, optimizer):
    qmodel = qdeploy.qat(float_cnn, data.x_train, data.y_train, weight_bits=3, act_bits=4, epochs=1, optimizer=optimizer)
    graph = qdeploy.export(qmodel, data.x_train[:1])
    assert np.array_equal(qdeploy.run_golden(graph, data.x_test), torch_forward(qmodel, data.x_test))
    for target in ("onnxruntime", "hls4ml"):
        assert qdeploy.compile(graph, target=target, out=tmp_path / target, data=data.x_test).bit_exact


def test_qat_command_line(tmp_path, data, capsys):
    train = tmp_path / "train.npz"
    np.savez(train, x=data.x_train, y=data.y_train)
    out = tmp_path / "qat.onnx"
    code = main(
        [
            "qat",
            f"{ROOT / 'examples' / 'digits.py'}:mlp",
            "--data",
            str(train),
            "--wbits",
            "3",
            "--abits",
            "4",
            "--epochs",
            "1",
            "--checkpoint",
            str(tmp_path / "ck.pt"),
            "-o",
            str(out),
            "-q",
        ]
    )
    assert code == 0 and out.exists() and (tmp_path / "ck.pt").exists()
    assert {row["weight_bits"] for row in qdeploy.inspect(out)["layers"]} == {3}
    np.savez(tmp_path / "nolabels.npz", x=data.x_train)
    code = main(
        [
            "qat",
            f"{ROOT / 'examples' / 'digits.py'}:mlp",
            "--data",
            str(tmp_path / "nolabels.npz"),
            "-o",
            str(tmp_path / "bad.onnx"),
            "-q",
        ]
    )
    assert code == EXIT_ERROR and "needs arrays 'x' and 'y'" in capsys.readouterr().err
    assert not (tmp_path / "bad.onnx").exists()
