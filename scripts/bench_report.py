"""Time ``rlopt report`` (``build_report``) on a synthetic sweep: 60 runs, 50k-point learning curves.

    python scripts/bench_report.py                 # build the sweep in a temp dir, time, delete it
    python scripts/bench_report.py /tmp/bench_out  # build it there once (reused by later calls), time

Each run directory holds a real TensorBoard event file written by ``SummaryWriter.add_scalar``:
the curve tag plus ``--other-tags`` other scalar tags at every step, as a trainer logs them.
``SummaryWriter`` spends ~90 µs per call (its pure-Python CRC32C), so ``--templates`` distinct
event files are written and copied into the run directories (byte copies, separate files).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CURVE_TAG = "rollout/episode_return"
"""The tag the report reads."""

STEP_SIZE = 20
"""Env steps between logged points."""


def _write_template(folder: Path, points: int, other_tags: int, seed: int) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    existing = sorted(folder.glob("*tfevents*")) if folder.is_dir() else []
    if existing:  # written by an earlier call
        return existing[0]
    rng = np.random.default_rng(seed)
    curve = np.cumsum(rng.normal(0.01, 1.0, size=points))
    others = rng.normal(size=(points, other_tags))
    folder.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(folder), max_queue=10_000)
    for i in range(points):
        step = (i + 1) * STEP_SIZE
        writer.add_scalar(CURVE_TAG, float(curve[i]), step)
        for j in range(other_tags):
            writer.add_scalar(f"other/metric_{j:02d}", float(others[i, j]), step)
    writer.close()
    (event_file,) = [p for p in folder.iterdir() if "tfevents" in p.name]
    return event_file


def make_sweep(out: Path, runs: int, arms: int, points: int, other_tags: int, templates: int) -> None:
    """Write OUT/manifest.json, every run's summary.json and a copied event file."""
    names = [f"arm{a}" for a in range(arms)]
    sources = [_write_template(out / "_templates" / f"t{t}", points, other_tags, seed=t) for t in range(templates)]
    rng = np.random.default_rng(0)
    manifest_runs = []
    for r in range(runs):
        arm, seed = names[r % arms], r // arms
        run_dir = Path("runs") / arm / f"seed_{seed}"
        (out / run_dir).mkdir(parents=True, exist_ok=True)
        source = sources[seed % templates]  # the seeds of one arm differ, so its curve band is a real bootstrap
        shutil.copyfile(source, out / run_dir / source.name)
        summary = {"seed": seed, "eval_return_mean": float(rng.normal(100 + 10 * (r % arms), 20))}
        (out / run_dir / "summary.json").write_text(json.dumps(summary))
        manifest_runs.append({"arm": arm, "seed": seed, "run_dir": str(run_dir), "overrides": {"seed": seed},
                              "config_hash": "0" * 64, "status": "finished", "exit_code": 0, "wall_seconds": 1.0})
    manifest = {"format_version": 1, "name": "bench", "rlopt_version": "0.1.0", "metric": "eval_return_mean",
                "curve": CURVE_TAG, "baseline": names[0],
                "arms": {name: {"overrides": {"actor.optim.lr": 10.0 ** -(i + 2)}} for i, name in enumerate(names)},
                "runs": manifest_runs}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", help="sweep directory to build or reuse (default: a temp dir)")
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--arms", type=int, default=6)
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--other-tags", type=int, default=10)
    parser.add_argument("--templates", type=int, default=3)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2, help="timed build_report calls")
    args = parser.parse_args(argv)

    temp = None if args.out else tempfile.mkdtemp(prefix="rlopt_bench_report_")
    out = Path(args.out or temp)
    try:
        if not (out / "manifest.json").exists():
            start = time.perf_counter()
            make_sweep(out, args.runs, args.arms, args.points, args.other_tags, args.templates)
            print(f"wrote synthetic sweep {out} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        start = time.perf_counter()
        from rlopt.report.build import build_report

        print(f"import rlopt.report.build: {time.perf_counter() - start:.2f} s")
        size = sum(p.stat().st_size for p in (out / "runs").rglob("*tfevents*"))
        print(f"{args.runs} runs, {size / 1e9:.2f} GB of event files")
        for i in range(args.repeat):
            start = time.perf_counter()
            build_report(out, reps=args.reps, seed=0)
            print(f"build_report #{i + 1}: {time.perf_counter() - start:.2f} s")
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
