"""Learning targets: run agents × envs × seeds with their presets and write the measured table.

    python scripts/benchmark_returns.py                      # all 6 agents × 2 envs × 5 seeds
    python scripts/benchmark_returns.py --agents ppo trpo --envs cartpole --seeds 0 1 2 --workers 2
    python scripts/benchmark_returns.py --agents a2c --envs pendulum --update   # redo one row, keep the rest
    python scripts/benchmark_returns.py --agents ppo --out /tmp/ppo_lr actor.optim.lr=3e-4   # overrides need --out
    python scripts/benchmark_returns.py --seeds-per-process 5 --out benchmarks/returns_stacked   # issue 17

Each run is ``configs/<agent>_<env>.yaml`` with only ``seed`` changed; the score is the mean of
the final deterministic evaluation (``eval.episodes`` fresh episodes). Results go to
``--out`` as JSON (one record per run) and a Markdown table (mean ± std over seeds, target,
pass/fail, wall time). Dotted overrides apply to every run; with any, ``--out`` is required (the
committed ``benchmarks/returns.*`` hold the presets' own results) and the outputs record them: an
``overrides`` field in every JSON record and a line above the Markdown table.

``--seeds-per-process K`` (issue 17) trains each preset's seeds K at a time in one process, stacked
(``agents.stacked.train_stacked``: seed k of a stack is its lone run up to float rounding); a preset
a stack cannot train yet runs its seeds alone, as the line above the table says. Every JSON record
then has ``seeds_per_process`` and the table a column of it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NoReturn, Sequence

ROOT = Path(__file__).resolve().parent.parent

# (agent, env) -> (env steps allowed, threshold on the mean final eval return)  — issue #3
TARGETS: dict[tuple[str, str], tuple[int, float]] = {
    ("ppo", "cartpole"): (100_000, 475.0),
    ("trpo", "cartpole"): (100_000, 475.0),
    ("npg", "cartpole"): (100_000, 475.0),
    ("a2c", "cartpole"): (200_000, 475.0),
    ("reinforce", "cartpole"): (300_000, 475.0),
    ("ppo", "pendulum"): (200_000, -200.0),
    ("trpo", "pendulum"): (200_000, -200.0),
    ("npg", "pendulum"): (200_000, -250.0),
    ("a2c", "pendulum"): (500_000, -250.0),
    ("reinforce", "pendulum"): (1_000_000, -400.0),
    ("acktr", "cartpole"): (200_000, 475.0),  # issue 11
    ("acktr", "pendulum"): (500_000, -250.0),
}
AGENT_ORDER = ("ppo", "trpo", "npg", "a2c", "reinforce", "acktr")
ENV_ORDER = ("cartpole", "pendulum")
MAX_STACK = 256
"""``--seeds-per-process``: at most one stack's seeds (``rlopt.stacked.learner.MAX_SEEDS``)."""
DEFAULT_OUT = Path("benchmarks/returns")
"""The committed table (``--out`` without overrides), relative to the working directory."""


def fail(message: str) -> NoReturn:
    """A one-line error on stderr and exit code 2 (bad input), before any run starts."""
    print(f"benchmark_returns.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_one(agent: str, env: str, seed: int, extra: list[str]) -> dict[str, Any]:
    """Train one preset with one seed in this process; returns its summary."""
    from agents import build_agent
    from rlopt.config import load_config
    from rlopt.trainer import Trainer

    cfg = load_config(ROOT / "configs" / f"{agent}_{env}.yaml", [f"seed={seed}", *extra])
    budget = TARGETS[(agent, env)][0]
    trained_steps = cfg.num_updates * cfg.batch_size  # whole rollouts: the last one may overshoot
    if trained_steps > budget:
        raise SystemExit(f"{agent}_{env}.yaml trains {trained_steps} env steps, more than the {budget:,} allowed")
    learner = build_agent(cfg)  # seeds the process and sets torch's threads, as `rlopt train` does
    started = time.perf_counter()
    summary = Trainer(learner, run_dir=None, progress=False).train()
    summary["process_seconds"] = round(time.perf_counter() - started, 2)
    summary.update(preset=f"{agent}_{env}", env=env, overrides=list(extra))
    return summary


def run_stack(agent: str, env: str, seeds: list[int], extra: list[str]) -> list[dict[str, Any]]:
    """Train ``seeds`` of one preset stacked in this process; one summary per seed (as :func:`run_one`'s,
    with ``seeds_per_process``; ``process_seconds`` is each seed's share)."""
    from agents.stacked import train_stacked
    from rlopt.config import load_config

    cfg = load_config(ROOT / "configs" / f"{agent}_{env}.yaml", [f"seed={seeds[0]}", *extra])
    started = time.perf_counter()
    summaries = train_stacked(cfg, seeds)
    share = round((time.perf_counter() - started) / len(seeds), 2)
    for summary in summaries:
        summary.update(process_seconds=share, preset=f"{agent}_{env}", env=env, overrides=list(extra),
                       seeds_per_process=len(seeds))  # fmt: skip
    return summaries


def table(records: list[dict[str, Any]], overrides: Sequence[str] = ()) -> str:
    """Markdown table: one row per (agent, env) with mean ± std over seeds; the overrides every run
    had, if any, on a line above it; with stacked runs, how many seeds shared a process (a column,
    and a line above: wall s / run is then each seed's share of its process)."""
    stacked = any(r.get("seeds_per_process", 1) > 1 for r in records)
    lines = [f"Overrides (every run): `{' '.join(overrides)}`", ""] if overrides else []
    if stacked:
        lines += ["Seeds stacked in one process (`--seeds-per-process`, issue 17): wall s / run is each seed's "
                  "share of its process; seeds / process 1 = alone.", ""]  # fmt: skip
    extra_head, extra_rule = (" seeds / process |", "---|") if stacked else ("", "")
    lines += [
        "| agent | env | steps | seeds | eval return (mean ± std over seeds) | min seed | target | pass | wall s / run |"
        + extra_head,
        "|---|---|---|---|---|---|---|---|---|" + extra_rule,
    ]
    for agent in AGENT_ORDER:
        for env in ENV_ORDER:
            rows = [r for r in records if r["agent"] == agent and r["env"] == env]
            if not rows:
                continue
            scores = [r["eval_return_mean"] for r in rows]
            mean = statistics.fmean(scores)
            std = statistics.pstdev(scores)
            budget, threshold = TARGETS[(agent, env)]
            wall = statistics.fmean(r["wall_seconds"] for r in rows)
            lines.append(
                f"| {agent} | {rows[0]['env_id']} | {rows[0]['total_steps']:,} | {len(rows)} | {mean:.1f} ± {std:.1f} "
                f"| {min(scores):.1f} | ≥ {threshold:g} in {budget:,} | {'yes' if mean >= threshold else 'NO'} | {wall:.1f} |"
                + (f" {max(r.get('seeds_per_process', 1) for r in rows)} |" if stacked else "")
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; overrides without ``--out`` (or with the committed table as ``--out``) exit 2."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=list(AGENT_ORDER), choices=AGENT_ORDER)
    parser.add_argument("--envs", nargs="+", default=list(ENV_ORDER), choices=ENV_ORDER)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (one torch thread each)")
    parser.add_argument("--seeds-per-process", type=int, default=1, metavar="K",
                        help=f"train a preset's seeds K at a time stacked in one process (1 to {MAX_STACK}; default 1: alone)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output path prefix (default {DEFAULT_OUT}; required with overrides)")
    parser.add_argument("--update", action="store_true",
                        help="keep the runs already in --out.json that this call does not redo")
    parser.add_argument("overrides", nargs="*",
                        help="dotted overrides applied to every run (after --out, or after --: --agents/--envs/--seeds "
                             "take every word that follows them)")  # fmt: skip
    args = parser.parse_args(argv)
    if not 1 <= args.seeds_per_process <= MAX_STACK:
        fail(f"--seeds-per-process must be in [1, {MAX_STACK}], got {args.seeds_per_process}")
    committed = {DEFAULT_OUT.resolve(), (ROOT / DEFAULT_OUT).resolve()}
    if args.overrides and (args.out is None or args.out.resolve() in committed):
        fail(f"overrides given ({' '.join(args.overrides)}): --out PREFIX is required; {DEFAULT_OUT}.* "
             "hold the presets' own results")  # fmt: skip
    args.out = DEFAULT_OUT if args.out is None else args.out
    return args


def check_runs(args: argparse.Namespace) -> list[str]:
    """Every (agent, env) config with the overrides loads and passes its agent's checks, within its
    budget (exit 2 otherwise); ``--update`` keeps only runs made with the same overrides. Returns the
    presets a stack cannot train (with ``--seeds-per-process`` > 1; they run alone)."""
    from agents import check_config
    from rlopt.config import load_config
    from rlopt.errors import ConfigError
    from rlopt.stacked.learner import check_stackable

    alone = []
    for agent in args.agents:
        for env in args.envs:
            try:
                cfg = check_config(load_config(ROOT / "configs" / f"{agent}_{env}.yaml", args.overrides))
            except ConfigError as err:
                fail(f"{agent}_{env}: {err}")
            budget = TARGETS[(agent, env)][0]
            if cfg.num_updates * cfg.batch_size > budget:
                fail(f"{agent}_{env} trains {cfg.num_updates * cfg.batch_size:,} env steps, more than the {budget:,} allowed")
            if args.seeds_per_process > 1:
                try:
                    check_stackable(cfg, args.seeds[: args.seeds_per_process])
                except ConfigError as err:
                    alone.append(f"{agent}_{env} ({' '.join(str(err).split())})")
    if args.update and args.out.with_suffix(".json").exists():
        redo = {(a, e) for a in args.agents for e in args.envs}
        kept = json.loads(args.out.with_suffix(".json").read_text())
        other = {tuple(r.get("overrides", [])) for r in kept if (r["agent"], r["env"]) not in redo} - {tuple(args.overrides)}
        if other:
            fail(f"--update: {args.out.with_suffix('.json')} holds runs made with overrides "
                 f"{' '.join(sorted(other)[0]) or '(none)'}, not {' '.join(args.overrides) or '(none)'}; use another --out")  # fmt: skip
    return alone


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    alone = check_runs(args)
    for preset in alone:
        print(f"not stacked, its seeds run alone: {preset}", flush=True)
    jobs = [(a, e, s) for a in args.agents for e in args.envs for s in args.seeds]
    jobs.sort(key=lambda job: -TARGETS[job[0], job[1]][0])  # longest budgets first: the pool finishes together
    k = args.seeds_per_process
    stacks = [(a, e, args.seeds[i : i + k]) for a in args.agents for e in args.envs for i in range(0, len(args.seeds), k)
              if k > 1 and not any(p.startswith(f"{a}_{e} ") for p in alone)]  # fmt: skip
    stacked = {(a, e) for a, e, _ in stacks}
    jobs = [job for job in jobs if (job[0], job[1]) not in stacked]
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    if args.update and args.out.with_suffix(".json").exists():
        redo = {(a, e, s) for a, e, s in jobs} | {(a, e, s) for a, e, seeds in stacks for s in seeds}  # stacked runs too
        kept = json.loads(args.out.with_suffix(".json").read_text())
        records = [r for r in kept if (r["agent"], r["env"], r["seed"]) not in redo]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Fresh interpreters ("spawn"): a forked worker inherits the parent's locks mid-use (the executor's
    # own threads exist before the first fork) and can block forever before its first instruction.
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_stack, a, e, seeds, args.overrides) for a, e, seeds in stacks]
        futures += [pool.submit(run_one, a, e, s, args.overrides) for a, e, s in jobs]
        for future in futures:
            result = future.result()
            for record in result if isinstance(result, list) else [result]:
                records.append(record)
                partial = args.out.with_suffix(".json.tmp")  # after every run, atomically: a crash keeps what finished
                partial.write_text(json.dumps(records, indent=2) + "\n")
                partial.replace(args.out.with_suffix(".json"))
                print(f"{record['preset']:<22} seed {record['seed']}: {record['eval_return_mean']:8.1f} "
                      f"({record['wall_seconds']:.1f} s, {record['steps_per_second']:.0f} steps/s)", flush=True)
    markdown = table(records, args.overrides)
    partial = args.out.with_suffix(".md.tmp")
    partial.write_text(markdown + "\n")
    partial.replace(args.out.with_suffix(".md"))
    print(markdown)
    print(f"total wall time {time.perf_counter() - started:.0f} s with {args.workers} workers")


if __name__ == "__main__":
    main()
