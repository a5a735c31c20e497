"""hls4ml's C simulation over several processes: a conv net's io_stream simulation takes seconds per sample.

The simulation cannot run in threads (hls4ml's generated code keeps its streams in static variables), so samples are
split across forked children, one share each, each running the library the parent loaded; results come back in
order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection

import numpy as np

from qdeploy.errors import QDeployError

log = logging.getLogger(__name__)

#: fewer samples than this per process: the fork and the transfer cost more than they save
MIN_SAMPLES_PER_PROCESS = 4


def process_count(samples: int) -> int:
    """How many processes ``samples`` are split across: one per usable core, at least MIN_SAMPLES_PER_PROCESS samples
    each; one where forking is unavailable or not allowed (a daemonic worker, e.g. a multiprocessing pool's)."""
    if "fork" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, samples // MIN_SAMPLES_PER_PROCESS))


def _run_share(predict: Callable[[np.ndarray], np.ndarray], share: np.ndarray, send: Connection) -> None:
    """In a forked child: ``predict`` on its share, sent back (or the error, as one line)."""
    try:
        send.send((True, predict(share)))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
        send.send((False, f"{type(error).__name__}: {error}"))
    finally:
        send.close()


def predict_in_processes(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """``predict(x)``, with the samples split across ``process_count(len(x))`` forked processes, one share each
    (forked, so the library the parent loaded is already in each child)."""
    processes = process_count(len(x))
    if processes == 1:
        return predict(x)
    context = multiprocessing.get_context("fork")
    children: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        for share in np.array_split(x, processes):
            receive, send = context.Pipe(duplex=False)
            child = context.Process(target=_run_share, args=(predict, share, send), daemon=True)
            child.start()
            send.close()
            children.append((child, receive))
        results = []
        for child, receive in children:
            try:
                ok, value = receive.recv()  # before join: a large result would block the child's send
            except EOFError:
                child.join()
                raise QDeployError(
                    f"the C simulation process ended with exit code {child.exitcode} before returning its samples; "
                    "rerun, or run the folder's C simulation directly to see why"
                ) from None
            if not ok:
                raise QDeployError(f"the C simulation failed: {value}")
            results.append(value)
    finally:
        for child, receive in children:
            receive.close()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
    log.debug("C simulation of %d samples in %d processes", len(x), processes)
    return np.concatenate(results)
