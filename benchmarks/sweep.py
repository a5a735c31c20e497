"""Design-space sweep on Ray vs the same points in a plain loop in one process (what users write today).

The grid (weight bits x activation bits x target on the digits MLP, optionally the CNN too) is run:
1. as a loop in one process, with the public API: quantize -> export -> compile -> predict -> score, the factory's
   model trained once, torch and ONNX Runtime free to use every core (the anchor);
2. by ``qdeploy.sweep`` on a local Ray with 2 workers, into an empty cache;
3. by ``qdeploy.sweep`` again: every point from the cache;
4. (``--one-worker``) by ``qdeploy.sweep`` on a local Ray with 1 worker, into another empty cache.
Each sweep's scores and bit-exactness are checked against the loop's, point by point.

    .venv/bin/python benchmarks/sweep.py                # writes benchmarks/results/sweep.{json,md}
    .venv/bin/python benchmarks/sweep.py --models mlp,cnn --one-worker
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qdeploy  # noqa: E402
from examples import digits  # noqa: E402
from qdeploy.evaluation import ACCURACY, score  # noqa: E402
from qdeploy.runtime import set_session_threads  # noqa: E402
from qdeploy.sweeps import resources_of  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
GRID = {
    "weight_bits": [2, 4, 6, 8],
    "act_bits": [4, 8],
    "target": ["onnxruntime", "hls4ml"],
    "verify_samples": [200],
}


def loop(factory: str, grid: dict, calib: np.ndarray, x: np.ndarray, y: np.ndarray, work: Path) -> list[dict]:
    """The anchor: every point in turn, in this process, with qdeploy's public API."""
    from qdeploy.frontend import load_factory

    model = load_factory(factory)
    keys = list(grid)
    rows = []
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        qmodel = qdeploy.quantize(model, calib, weight_bits=point["weight_bits"], act_bits=point["act_bits"])
        graph = qdeploy.export(qmodel, calib[:1])
        out = work / f"{point['target']}_w{point['weight_bits']}a{point['act_bits']}"
        artifact = qdeploy.compile(graph, target=point["target"], out=out, verify_samples=point["verify_samples"])
        accuracy = score(artifact.predict(x), y, ACCURACY)
        rows.append({**point, ACCURACY: accuracy, "bit_exact": artifact.bit_exact, **resources_of(artifact.report)})
    return rows


def same_results(loop_rows: list[dict], sweep_rows: list[dict]) -> bool:
    """The sweep computed what the loop computed: the same scores, exactness and resources at every point."""
    keys = ("weight_bits", "act_bits", "target", ACCURACY, "bit_exact", "luts", "dsps")
    index = {tuple(r.get(k) for k in keys[:3]): r for r in sweep_rows}
    return len(index) == len(loop_rows) and all(
        all(index[tuple(r[k] for k in keys[:3])].get(k) == r.get(k) for k in keys) for r in loop_rows
    )


def timed_sweep(factory: str, grid: dict, files: dict, out: Path, cache: Path, workers: int) -> tuple[float, list]:
    start = time.perf_counter()
    result = qdeploy.sweep(factory, grid, files["test"], out=out, calib=files["calib"], cache=cache, workers=workers)
    return time.perf_counter() - start, result.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp", help="digits factories, comma-separated (default mlp)")
    parser.add_argument("--one-worker", action="store_true", help="also time the sweep on a 1-worker Ray")
    args = parser.parse_args()

    data = digits.load_digits_data()
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    set_session_threads(cores)
    rows, checks = [], []
    with tempfile.TemporaryDirectory(prefix="qdeploy-sweep-bench-") as tmp:
        work = Path(tmp)
        files = {"calib": work / "calib.npz", "test": work / "test.npz"}
        np.savez(files["calib"], x=data.x_train[:256])
        np.savez(files["test"], x=data.x_test, y=data.y_test)
        for name in args.models.split(","):
            factory = f"{ROOT / 'examples' / 'digits.py'}:{name}"
            points = int(np.prod([len(v) for v in GRID.values()]))
            load_before = os.getloadavg()[0]
            start = time.perf_counter()
            loop_rows = loop(factory, GRID, data.x_train[:256], data.x_test, data.y_test, work / f"loop_{name}")
            loop_seconds = time.perf_counter() - start
            ray2, ray2_rows = timed_sweep(factory, GRID, files, work / f"sweep_{name}", work / f"cache_{name}", 2)
            rerun, rerun_rows = timed_sweep(factory, GRID, files, work / f"rerun_{name}", work / f"cache_{name}", 2)
            row = {
                "model": name,
                "points": points,
                "loop_s": round(loop_seconds, 1),
                "ray_2_workers_s": round(ray2, 1),
                "speedup_2_workers": round(loop_seconds / ray2, 2),
                "cached_rerun_s": round(rerun, 2),
                "rerun_all_cached": all(r["cached"] for r in rerun_rows),
                "failed_points": sum(1 for r in ray2_rows if r["error"]),
            }
            checks.append(("2 workers", name, same_results(loop_rows, ray2_rows)))
            checks.append(("cached rerun", name, same_results(loop_rows, rerun_rows)))
            if args.one_worker:
                ray1, ray1_rows = timed_sweep(factory, GRID, files, work / f"one_{name}", work / f"cache1_{name}", 1)
                row["ray_1_worker_s"] = round(ray1, 1)
                row["speedup_2_vs_1_worker"] = round(ray1 / ray2, 2)
                checks.append(("1 worker", name, same_results(loop_rows, ray1_rows)))
            row["load_average_before_after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            rows.append(row)
            print(json.dumps(row), flush=True)
            pareto = [
                {k: r.get(k) for k in ("weight_bits", "act_bits", "target", ACCURACY, "bit_exact", "luts", "dsps")}
                for r in ray2_rows
            ]
            row["points_table"] = pareto

    meta = {
        "grid": GRID,
        "cores": cores,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": __import__("ray").__version__,
        "qdeploy": qdeploy.__version__,
        "results_equal_to_loop": all(ok for *_, ok in checks),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep.json").write_text(json.dumps({"meta": meta, "rows": rows, "checks": checks}, indent=2))
    lines = [
        "# Sweep on Ray vs a loop in one process",
        "",
        f"Grid: {', '.join(f'{k} {v}' for k, v in GRID.items())} on the digits networks; {cores} cores. The loop is "
        "the anchor (quantize, export, compile, predict, one point after another, torch and ONNX Runtime on every "
        "core); the sweep runs one Ray task per point (1 CPU each) into an empty cache, then again from the cache.",
        "",
        "| model | points | loop s | Ray, 2 workers s | speed-up | Ray, 1 worker s | 2 vs 1 worker | cached rerun s "
        "| rerun all cached | failed points |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['points']} | {row['loop_s']} | {row['ray_2_workers_s']} | "
            f"{row['speedup_2_workers']}x | {row.get('ray_1_worker_s', '–')} | "
            f"{str(row['speedup_2_vs_1_worker']) + 'x' if 'speedup_2_vs_1_worker' in row else '–'} | "
            f"{row['cached_rerun_s']} | {'yes' if row['rerun_all_cached'] else 'no'} | {row['failed_points']} |"
        )
    lines += [
        "",
        f"Every sweep's scores, bit-exactness and resources equal the loop's at every point: "
        f"{'yes' if meta['results_equal_to_loop'] else 'NO'} ({', '.join(f'{c[0]} {c[1]}' for c in checks)}).",
        "Load average (1 min) before and after each model's runs: "
        + ", ".join(f"{r['model']} {r['load_average_before_after']}" for r in rows)
        + " (other jobs on the machine slow both sides).",
        "",
        "Points (the sweep's rows):",
        "",
        "| model | weight bits | act bits | target | accuracy | bit-exact | LUTs (est.) | DSPs (est.) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for p in row["points_table"]:
            lines.append(
                f"| {row['model']} | {p['weight_bits']} | {p['act_bits']} | {p['target']} | "
                f"{100 * p[ACCURACY]:.2f} % | {'yes' if p['bit_exact'] else 'no'} | {p.get('luts') or '–'} | "
                f"{p.get('dsps') if p.get('dsps') is not None else '–'} |"
            )
    lines += ["", f"`{json.dumps(meta)}`", ""]
    (RESULTS / "sweep.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
