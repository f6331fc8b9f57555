"""Stacked seeds against lone runs, side by side (issue 17): per-seed wall time and final returns.

Each measurement is a fresh process, one torch thread, the rl-zoo PPO CartPole settings of
``scripts/bench_vs_sb3.py``'s PPO row (or a preset: ``--preset acktr_cartpole``, e.g. for a stack whose
seeds update alone, :mod:`rlopt.stacked.per_seed`), ``--steps`` env steps per seed, no run directory (no logs,
no checkpoints on either side), then ``--eval-episodes`` deterministic evaluation episodes per seed.
Per round, in turn: a lone rlopt run (``Trainer``) of seed 0 and one stack for each K (seeds
0..K-1, ``agents.stacked.build_stacked``); rounds alternate the order. Reported per K: the median
over rounds of the process wall time per seed, of its CPU time per seed (what a busy shared machine
distorts least) and of the training loop's wall time per seed, their ratio to the lone run's, and
every seed's final evaluation return.

    python scripts/bench_stacked.py [--preset NAME] [--ks 1 4 10] [--rounds 1] [--steps 100000] [--eval-episodes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

MAX_K = 64
"""At most this many seeds per stack here (each seed holds its envs and networks)."""

_CHILD = """
import json, sys, time
start = float(sys.argv[1])
from rlopt.config import load_config
cfg = load_config(sys.argv[4] or None, [], values=json.loads(sys.argv[2]))
k = int(sys.argv[3])
if k == 0:
    from agents import build_agent
    from rlopt.trainer import Trainer
    agent = build_agent(cfg)
    summary = Trainer(agent, run_dir=None, progress=False).train(cfg.total_steps)
    out = {"learn": summary["wall_seconds"], "returns": [summary["eval_return_mean"]]}
else:
    from agents.stacked import build_stacked
    from rlopt.stacked import StackedTraining
    training = StackedTraining(build_stacked(cfg, range(k)))
    summaries = training.train()
    out = {"learn": training.wall_seconds, "returns": [s["eval_return_mean"] for s in summaries]}
import resource
usage = resource.getrusage(resource.RUSAGE_SELF)
out["wall"] = time.time() - start
out["cpu"] = usage.ru_utime + usage.ru_stime
print(json.dumps(out))
"""


STACKED_KS = (1, 4, 10, 20)
"""Stack sizes ``scripts/bench_vs_sb3.py`` measures by default (``--stacked-ks``)."""


def measure_stacked(config: dict, k: int, first_seed: int, work: Path) -> dict:
    """One stack as a user runs it, whole process: ``python -m rlopt train CONFIG --seeds
    first..first+k-1 --run-dir DIR`` (progress bar and TensorBoard logging on, as the lone row).
    Returns its wall seconds, peak RSS (MiB, ``wait4``), the seeds' ``learn_seconds`` (each seed's
    share of the loop) and final evaluation returns; or ``{"refused": <the CLI's one line>}`` when
    the stack refuses the config (exit code 2)."""
    import yaml

    path = work / f"stack-{config['agent']}-{k}-{len(list(work.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir, seeds = path.with_suffix(""), list(range(first_seed, first_seed + k))
    argv = [sys.executable, "-m", "rlopt", "train", str(path), "--seeds", f"{seeds[0]}-{seeds[-1]}", "--run-dir", str(run_dir)]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = [line.strip() for line in err.read().splitlines() if line.strip()]
    if code == 2:
        return {"refused": lines[-1] if lines else "exit code 2"}
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code}: {lines[-1:] or ''}")
    summaries = [json.loads((run_dir / f"seed_{seed}" / "summary.json").read_text()) for seed in seeds]
    return {"wall": wall, "rss": usage.ru_maxrss / 1024, "learn": statistics.median(s["learn_seconds"] for s in summaries),
            "returns": [s["eval_return_mean"] for s in summaries]}  # fmt: skip


def stacked_table(name: str, lone: list[dict], sb3: list[dict], stacks: dict[int, list[dict]]) -> list[str]:
    """Markdown rows of one benchmark row: the lone rlopt run, SB3, then each stack size K with its
    per-seed wall time (medians over repetitions) and its ratio to the lone run's and to SB3's."""
    lone_wall, sb3_wall = statistics.median(r["wall"] for r in lone), statistics.median(r["wall"] for r in sb3)
    lines = [f"| {name} | lone rlopt | {lone_wall:.1f} | {lone_wall:.1f} | 1.00× | {sb3_wall / lone_wall:.2f}× | "
             f"{statistics.median(r['learn'] for r in lone):.1f} | {statistics.median(r['rss'] for r in lone):.0f} | "
             f"{_returns(lone)} |",
             f"| {name} | SB3 | {sb3_wall:.1f} | {sb3_wall:.1f} | {lone_wall / sb3_wall:.2f}× | 1.00× | "
             f"{statistics.median(r['learn'] for r in sb3):.1f} | {statistics.median(r['rss'] for r in sb3):.0f} | "
             f"{_returns(sb3)} |"]  # fmt: skip
    for k, results in stacks.items():
        refused = [r["refused"] for r in results if "refused" in r]
        if refused:
            lines.append(f"| {name} | stacked K={k} | refused: {refused[0]} | | | | | | |")
            continue
        wall = statistics.median(r["wall"] for r in results)
        returns = " ".join(f"{x:.0f}" for r in results for x in r["returns"])
        lines.append(f"| {name} | stacked K={k} | {wall:.1f} | {wall / k:.2f} | **{lone_wall / (wall / k):.2f}×** | "
                     f"**{sb3_wall / (wall / k):.2f}×** | {statistics.median(r['learn'] for r in results):.2f} | "
                     f"{statistics.median(r['rss'] for r in results):.0f} | {returns} |")  # fmt: skip
    return lines


def stacked_section(stacks: dict[str, dict[int, list[dict]]], results: dict[str, dict[str, list]], ks: list[int]) -> list[str]:
    """The markdown section of ``scripts/bench_vs_sb3.py``'s stacked runs (none: no lines)."""
    if not stacks:
        return []
    lines = ["", "Stacked seeds (issue 17): `rlopt train CONFIG --seeds S-(S+K-1)`, whole process per stack "
             "(logging, checkpoints, final evaluation of every seed); per-seed wall = process wall / K; "
             "× = the lone run's (SB3's) wall over it.", "", *STACKED_HEADER]  # fmt: skip
    for name, by_k in stacks.items():
        lines += stacked_table(name, results[name]["rlopt"], results[name]["sb3"], {k: by_k[k] for k in ks})
    return lines


def _returns(results: list[dict]) -> str:
    return " / ".join(f"{r['return']:.0f}" for r in results)


STACKED_HEADER = [
    "| row | run | process wall s | wall s per seed | × vs lone rlopt | × vs SB3 | loop s per seed | peak RSS MiB | final eval returns |",
    "|---|---|---:|---:|---:|---:|---:|---:|---|",
]  # fmt: skip


def stacked_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace, rows: list, all_rows: dict) -> tuple[list[int], set[str]]:
    """``--stacked-ks`` (each K in 1..256, the CLI's bound) and ``--stacked-rows`` (default: the CartPole rows run)."""
    try:
        ks = [int(k) for k in args.stacked_ks.split(",") if k.strip()]
    except ValueError:
        parser.error(f"--stacked-ks: {args.stacked_ks!r} is no comma-separated list of ints")
    if any(not 1 <= k <= 256 for k in ks):
        parser.error(f"--stacked-ks: each K must be in 1..256, got {args.stacked_ks}")
    if args.stacked_rows is None:
        return ks, {row.name for row in rows if row.env_id.startswith("CartPole")}
    names = set() if args.stacked_rows == "none" else set(args.stacked_rows.split(","))
    if names - set(all_rows):
        parser.error(f"--stacked-rows: unknown row {sorted(names - set(all_rows))[0]!r}; rows: {', '.join(all_rows)}")
    return ks, names


def run(values: dict, k: int, preset: str = "") -> dict:
    """One fresh process: a lone run (``k`` = 0) or a stack of seeds 0..k-1 of ``values`` over
    ``preset`` (none: ``values`` alone); its measurements."""
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", _CHILD, repr(start), json.dumps(values), str(k), preset],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"bench_stacked: K={k} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 10], help="stack sizes (default 1 4 10)")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (default 1)")
    parser.add_argument("--steps", type=int, default=100_000, help="env steps per seed (default 100000)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes per seed (default 10)")
    parser.add_argument("--preset", default="", help="a preset to stack instead of the PPO CartPole row")
    args = parser.parse_args()
    from bench_rows import PPO_CARTPOLE  # the same hyper-parameters as the SB3 comparison
    from rlopt.presets import preset_names

    if any(k < 1 or k > MAX_K for k in args.ks):
        parser.error(f"--ks: each K must be in 1..{MAX_K}")
    if args.rounds < 1 or args.steps < 1 or args.eval_episodes < 1:
        parser.error("--rounds, --steps and --eval-episodes must be >= 1")
    if args.preset and args.preset not in preset_names():
        parser.error(f"--preset: {args.preset!r} is no preset; presets: {', '.join(preset_names())}")
    values = {**({} if args.preset else PPO_CARTPOLE.rlopt), "total_steps": args.steps, "seed": 0, "threads": 1,
              "device": "cpu", "eval": {"episodes": args.eval_episodes}}  # fmt: skip
    arms = [0, *args.ks]  # 0: the lone run
    results: dict[int, list[dict]] = {k: [] for k in arms}
    for r in range(args.rounds):
        for k in arms if r % 2 == 0 else arms[::-1]:
            results[k].append(run(values, k, args.preset))
            print(f"round {r + 1} {'lone' if k == 0 else f'K={k}'}: {results[k][-1]}", file=sys.stderr, flush=True)
    lone_wall = statistics.median(m["wall"] for m in results[0])
    lone_learn = statistics.median(m["learn"] for m in results[0])
    lone_cpu = statistics.median(m["cpu"] for m in results[0])
    title = f"preset {args.preset}" if args.preset else "PPO CartPole-v1 (rl-zoo)"
    print(f"{title}, {args.steps:,} steps per seed, one thread, {args.rounds} round(s); "
          f"per seed: process wall, process CPU and training-loop wall, and the lone run's over it")  # fmt: skip
    print("| run | wall s/seed | × vs lone | CPU s/seed | × vs lone | loop s/seed | × vs lone | final eval returns |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for k in arms:
        n = 1 if k == 0 else k
        wall, cpu, learn = (statistics.median(m[key] for m in results[k]) / n for key in ("wall", "cpu", "learn"))
        returns = " ".join(f"{x:.0f}" for m in results[k] for x in m["returns"])
        print(f"| {'lone rlopt' if k == 0 else f'stacked K={k}'} | {wall:.1f} | {lone_wall / wall:.2f} | {cpu:.1f} | "
              f"{lone_cpu / cpu:.2f} | {learn:.1f} | {lone_learn / learn:.2f} | {returns} |")  # fmt: skip


if __name__ == "__main__":
    main()
