"""Run context: instruments see every step; failing steps are named; the fixed-point helper is capped."""

from __future__ import annotations

import pytest

from qdeploy.errors import QDeployError
from qdeploy.pipeline import DumpModels, Instrument, RunContext, Timing, run_steps, until_fixed_point


class Recorder(Instrument):
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def after_step(self, name, model, seconds) -> None:
        self.seen.append((name, model is not None))


def identity_step(model, cfg):
    """Returns the model unchanged."""
    return model


def failing_step(model, cfg):
    """Raises like a broken pass would."""
    raise ValueError("shape mismatch in weights")


def test_instruments_see_steps_and_timed_work(mlp_w4a8, tmp_path):
    recorder, timing = Recorder(), Timing()
    ctx = RunContext(instruments=[recorder, timing, DumpModels(tmp_path / "ir")])
    run_steps(mlp_w4a8[1], None, [identity_step], ctx)
    ctx.timed("compile_c", lambda: None)
    assert recorder.seen == [("identity_step", True), ("compile_c", False)]
    assert set(timing.seconds) == {"identity_step", "compile_c"}
    assert [p.name for p in (tmp_path / "ir").iterdir()] == ["00_identity_step.onnx"]


def test_failing_step_is_named(mlp_w4a8):
    with pytest.raises(QDeployError, match=r"\[failing_step\] failed: ValueError: shape mismatch in weights"):
        run_steps(mlp_w4a8[1], None, [identity_step, failing_step], RunContext())


def test_until_fixed_point_is_capped():
    counter = {"n": 0}

    def always_changes(model):
        counter["n"] += 1
        return model, True

    with pytest.raises(QDeployError, match="did not converge in 5 iterations"):
        until_fixed_point(always_changes, object(), max_iterations=5)
    assert counter["n"] == 5
    assert until_fixed_point(lambda m: (m, False), "model") == "model"
