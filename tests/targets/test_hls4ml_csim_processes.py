"""hls4ml's C simulation split across forked processes: same results, in order, each share in its own process."""

from __future__ import annotations

import os

import numpy as np
import pytest

from qdeploy.targets.hls4ml import csim_processes


def _tagged(x: np.ndarray) -> np.ndarray:
    """Each sample doubled, next to the id of the process that computed it."""
    return np.stack([2 * x.reshape(len(x), -1).sum(axis=1), np.full(len(x), os.getpid())], axis=1)


def test_samples_split_across_processes_come_back_in_order(monkeypatch):
    monkeypatch.setattr(csim_processes, "process_count", lambda samples: 2)
    x = np.arange(40, dtype=np.float32).reshape(10, 2, 2)
    y = csim_processes.predict_in_processes(_tagged, x)
    np.testing.assert_array_equal(y[:, 0], 2 * x.reshape(10, -1).sum(axis=1))
    pids = set(y[:, 1].astype(int))
    assert len(pids) == 2 and os.getpid() not in pids


@pytest.mark.parametrize(("samples", "most"), [(1, 1), (7, 1), (8, 2), (1000, None)])
def test_process_count_keeps_several_samples_per_process(samples, most):
    count = csim_processes.process_count(samples)
    assert 1 <= count <= max(1, samples // csim_processes.MIN_SAMPLES_PER_PROCESS)
    if most is not None:
        assert count <= most


def _fails(x: np.ndarray) -> np.ndarray:
    raise RuntimeError("weights file unreadable")


def test_an_error_in_a_child_is_one_line_in_the_parent(monkeypatch):
    from qdeploy.errors import QDeployError

    monkeypatch.setattr(csim_processes, "process_count", lambda samples: 2)
    with pytest.raises(QDeployError, match=r"^the C simulation failed: RuntimeError: weights file unreadable$"):
        csim_processes.predict_in_processes(_fails, np.zeros((8, 3), dtype=np.float32))
