"""hls4ml's C simulation over several processes: a conv net's io_stream simulation takes seconds per sample.

The simulation cannot run in threads (hls4ml's generated code keeps its streams in static variables), so samples are
split across forked children, each running the library the parent loaded on its share; results come back in order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import numpy as np

log = logging.getLogger(__name__)

#: fewer samples than this per process: the fork and the transfer cost more than they save
MIN_SAMPLES_PER_PROCESS = 4

# The forked children read the predictor from here (a closure over a ctypes library cannot be pickled).
_predict: Callable[[np.ndarray], np.ndarray] | None = None


def _predict_share(x: np.ndarray) -> np.ndarray:
    assert _predict is not None, "set by predict_in_processes before forking"
    return _predict(x)


def process_count(samples: int) -> int:
    """How many processes ``samples`` are split across: one per usable core, at least MIN_SAMPLES_PER_PROCESS samples
    each; one where forking is unavailable or not allowed (a daemonic worker, e.g. a multiprocessing pool's)."""
    if "fork" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, samples // MIN_SAMPLES_PER_PROCESS))


def predict_in_processes(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """``predict(x)``, with the samples split across ``process_count(len(x))`` forked processes."""
    processes = process_count(len(x))
    if processes == 1:
        return predict(x)
    global _predict
    _predict = predict
    try:
        shares = np.array_split(x, processes)
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_predict_share, shares))
    finally:
        _predict = None
    log.debug("C simulation of %d samples in %d processes", len(x), processes)
    return np.concatenate(results)
