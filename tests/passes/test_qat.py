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
    trained, losses = qat_train(ptq, data.x_train, data.y_train, epochs=8, lr=3e-3)
    assert losses[-1] < 0.8 * losses[0]
    assert _accuracy(trained, data) > ptq_accuracy + 0.1


def test_resume_from_checkpoint_equals_an_uninterrupted_run(float_mlp, data, tmp_path, monkeypatch):
    from qdeploy.passes.qat import train

    def fresh():
        return qdeploy.quantize(float_mlp, data.x_train[:256], weight_bits=4, act_bits=4, trainable_scales=True)

    straight, straight_losses = qat_train(fresh(), data.x_train, data.y_train, epochs=3)
    checkpoint = tmp_path / "qat.pt"
    save = train._save_checkpoint

    def save_then_crash(path, payload):  # the run dies right after writing the checkpoint of epoch 2
        save(path, payload)
        if payload["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        qat_train(fresh(), data.x_train, data.y_train, epochs=3, checkpoint=checkpoint)
    monkeypatch.setattr(train, "_save_checkpoint", save)
    assert checkpoint.exists() and not (tmp_path / "qat.pt.tmp").exists()
    resumed, losses = qat_train(fresh(), data.x_train, data.y_train, epochs=3, checkpoint=checkpoint, resume=True)
    assert losses == straight_losses
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_qat_never_ends_below_its_starting_point_on_held_out_data(float_mlp, data):
    """A learning rate far too high wrecks training; the held-out check then returns the PTQ starting point."""
    ptq = qdeploy.quantize(float_mlp, data.x_train[:512], weight_bits=4, act_bits=4, trainable_scales=True)
    start = torch_forward(ptq, data.x_test)
    history: dict = {}
    trained, _ = qat_train(ptq, data.x_train, data.y_train, epochs=2, lr=1.0, history=history)
    accuracies = history["val_accuracy"]
    assert len(accuracies) == 3 and max(accuracies[1:]) <= accuracies[0]  # training did make it worse
    assert history["best_epoch"] == 0
    assert np.array_equal(torch_forward(trained, data.x_test), start)


def test_held_out_selection_uses_the_given_validation_data(float_mlp, data):
    ptq = qdeploy.quantize(float_mlp, data.x_train[:512], weight_bits=2, act_bits=2, trainable_scales=True)
    history: dict = {}
    val = (data.x_train[:200], data.y_train[:200])
    trained, _ = qat_train(ptq, data.x_train[200:], data.y_train[200:], epochs=3, validation=val, history=history)
    best = history["best_epoch"]
    assert history["val_accuracy"][best] == max(history["val_accuracy"]) > history["val_accuracy"][0]
    held_out = float((torch_forward(trained, val[0]).argmax(1) == val[1]).mean())
    assert held_out == pytest.approx(history["val_accuracy"][best])


def test_scales_are_learned_without_weight_decay(float_mlp, data):
    from qdeploy.passes.qat.train import _parameter_groups

    qmodel = qdeploy.quantize(float_mlp, data.x_train[:128], weight_bits=4, act_bits=4, trainable_scales=True)
    groups = _parameter_groups(qmodel, lr=1e-3, scale_lr=1e-4, weight_decay=0.01)
    names = {id(p): n for n, p in qmodel.named_parameters()}
    scale_group = next(g for g in groups if g["lr"] == 1e-4)
    assert scale_group["weight_decay"] == 0.0
    assert scale_group["params"] and all("scaling_impl" in names[id(p)] for p in scale_group["params"])
    decayed = [names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]]
    assert decayed and all(n.endswith(".weight") for n in decayed)


def test_model_without_quantizable_layer_is_refused(data):
    from torch import nn

    from qdeploy.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="no Linear or Conv layer"):
        qdeploy.qat(nn.Sequential(nn.Flatten(), nn.ReLU()), data.x_train, data.y_train, epochs=1)


def test_resume_without_checkpoint_and_bad_labels_are_refused(float_mlp, data, tmp_path):
    qmodel = qdeploy.quantize(float_mlp, data.x_train[:64])
    with pytest.raises(QDeployError, match="cannot resume"):
        qat_train(qmodel, data.x_train, data.y_train, checkpoint=tmp_path / "none.pt", resume=True)
    with pytest.raises(QDeployError, match="10 inputs but 9 labels"):
        qat_train(qmodel, data.x_train[:10], data.y_train[:9])


def test_a_checkpoint_without_the_schedules_base_rates_is_refused(float_mlp, data, tmp_path):
    """Checkpoints written before QAT ran on the shared training loop hold no 'initial_lr': refused, not misread."""
    x, y = data.x_train[:200], data.y_train[:200]
    checkpoint = tmp_path / "qat.pt"
    qat_train(qdeploy.quantize(float_mlp, data.x_train[:64]), x, y, epochs=1, checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    for group in state["optimizer"]["param_groups"]:
        del group["initial_lr"]
    torch.save(state, checkpoint)
    with pytest.raises(QDeployError, match="written by an older qdeploy; start a new checkpoint"):
        qat_train(qdeploy.quantize(float_mlp, data.x_train[:64]), x, y, epochs=1, checkpoint=checkpoint, resume=True)


@pytest.mark.parametrize("optimizer", ["adamw4bit"])
def test_qat_model_compiles_bit_exactly(float_cnn, data, tmp_path, optimizer):
    qmodel = qdeploy.qat(float_cnn, data.x_train, data.y_train, weight_bits=3, act_bits=4, epochs=1, optimizer=optimizer)
    graph = qdeploy.export(qmodel, data.x_train[:1])
    assert np.array_equal(qdeploy.run_golden(graph, data.x_test), torch_forward(qmodel, data.x_test))
    for target in ("onnxruntime", "hls4ml"):
        assert qdeploy.compile(graph, target=target, out=tmp_path / target, data=data.x_test).bit_exact


def test_qat_command_line(tmp_path, data, capsys):
    def qat_cli(data_file, output, *options) -> int:
        factory = f"{ROOT / 'examples' / 'digits.py'}:mlp"
        return main(["qat", factory, "--data", str(data_file), *map(str, options), "-o", str(output), "-q"])

    train = tmp_path / "train.npz"
    np.savez(train, x=data.x_train, y=data.y_train)
    out = tmp_path / "qat.onnx"
    code = qat_cli(train, out, "--wbits", 3, "--abits", 4, "--epochs", 1, "--checkpoint", tmp_path / "ck.pt")
    assert code == 0 and out.exists() and (tmp_path / "ck.pt").exists()
    assert {row["weight_bits"] for row in qdeploy.inspect(out)["layers"]} == {3}
    np.savez(tmp_path / "nolabels.npz", x=data.x_train)
    assert qat_cli(tmp_path / "nolabels.npz", tmp_path / "bad.onnx") == EXIT_ERROR
    assert "needs arrays 'x' and 'y'" in capsys.readouterr().err
    assert not (tmp_path / "bad.onnx").exists()
    # --validation reaches the trainer: a too-small held-out file is refused naming it, nothing written
    np.savez(tmp_path / "val.npz", x=data.x_test[:5], y=data.y_test[:5])
    assert qat_cli(train, tmp_path / "bad.onnx", "--validation", tmp_path / "val.npz") == EXIT_ERROR
    assert "QAT validation data: 5 inputs" in capsys.readouterr().err
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.parametrize(("written_by", "resumed_with"), [("adamw", "adamw4bit"), ("adamw4bit", "adamw")])
def test_resuming_with_another_optimizers_state_is_refused_and_leaves_the_checkpoint(
    float_mlp, data, tmp_path, written_by, resumed_with
):
    def fresh():
        return qdeploy.quantize(float_mlp, data.x_train[:128], weight_bits=4, act_bits=4, trainable_scales=True)

    checkpoint = tmp_path / "qat.pt"
    qat_train(fresh(), data.x_train, data.y_train, epochs=2, checkpoint=checkpoint, optimizer=written_by)
    before = checkpoint.read_bytes()
    message = rf"cannot resume from .*qat.pt: .*optimizer '{written_by}' -> '{resumed_with}'"
    with pytest.raises(QDeployError, match=message):
        qat_train(fresh(), data.x_train, data.y_train, epochs=2, checkpoint=checkpoint, resume=True, optimizer=resumed_with)
    # another held-out split (here: none) would index accuracies the checkpoint never recorded
    with pytest.raises(QDeployError, match=r"held_out_samples \d+ -> 0"):
        qat_train(
            fresh(),
            data.x_train,
            data.y_train,
            epochs=2,
            checkpoint=checkpoint,
            resume=True,
            optimizer=written_by,
            val_fraction=0.0,
        )
    assert checkpoint.read_bytes() == before


def test_api_passes_training_options_through_and_rejects_typos(float_mlp, data):
    # the validation set reaches qat_train (its own check fires); a misspelt option is not silently ignored
    with pytest.raises(QDeployError, match="QAT validation data: 5 inputs"):
        qdeploy.qat(float_mlp, data.x_train, data.y_train, epochs=1, validation=(data.x_test[:5], data.y_test[:5]))
    with pytest.raises(QDeployError, match="valdation"):
        qdeploy.qat(float_mlp, data.x_train, data.y_train, epochs=1, valdation=(data.x_test, data.y_test))
