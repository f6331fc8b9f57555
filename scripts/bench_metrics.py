"""Wall time of one trust-region step per metric M(θ) and solver (issue 11, "Cost").

Builds the TRPO CartPole preset's agent (configs/trpo_cartpole.yaml: 8 envs × 256 steps = 2048
samples, 64×64 tanh actor, ``cg_iters`` 15), collects one rollout batch, then times
``TrustRegion.step`` (gradient, metric set-up, solve, scaling, line search if on) on that batch for
each metric/solver pair, with the line search (TRPO) and without (NPG, ACKTR), restoring the
actor's parameters before every step so each repeat solves the same problem. The reference row is
one Adam step of the same actor on the same batch (forward, surrogate, backward, step).

    python scripts/bench_metrics.py [--repeats 10] [--threads 1] [--config configs/trpo_cartpole.yaml]

Prints a markdown table: median ms per step with and without line search, both as a multiple of the
Adam step (each trust-region step is timed right after an Adam step; the ratio is of the two
medians), CG iterations and whether CG met negative curvature. Timings are wall-clock: other
processes on the machine show up in them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agents import TRPO  # noqa: E402
from agents.npg import actor_metric_inputs  # noqa: E402
from rlopt.envs import make_vec_env  # noqa: E402
from rlopt.rollout import RolloutCollector  # noqa: E402
from rlopt.optim import build_optimizer  # noqa: E402
from rlopt.trust_region import METRICS  # noqa: E402
from rlopt.trust_region.solvers import SOLVER_METRICS  # noqa: E402

METRIC_ORDER = (
    "identity", "fisher", "empirical_fisher", "gradient_covariance",
    "gauss_newton", "generalized_gauss_newton", "hessian",
)  # fmt: skip
"""Metrics in the table's order (docs/theory.md#metrics: loss-independent first); each is a row with ``solver: cg``."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "trpo_cartpole.yaml"))
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per metric (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    assert set(METRIC_ORDER) == set(METRICS), "a metric is missing from the table"

    agent = TRPO.from_config(args.config, seed=0)
    envs = make_vec_env(agent.cfg.env.id, agent.cfg.env.num_envs, seed=0)
    collector = RolloutCollector(envs, agent.cfg.rollout.n_steps, obs_normalizer=agent.obs_normalizer, seed=0)
    collector.collect(agent.act, agent.value)
    batch = agent.prepare_batch(collector.buffer)
    envs.close()
    advantages = agent.advantages(batch)
    entropy_coef = agent.current_entropy_coef
    params = list(agent.actor.parameters())
    theta_old = [p.detach().clone() for p in params]
    with torch.no_grad():
        old_dist = agent.actor(batch.obs).detach()

    def closure() -> tuple[torch.Tensor, torch.Tensor]:
        """The agent's closure for the current solver (kfac runs it through the recorded module)."""
        inputs = actor_metric_inputs(agent.actor, batch.obs, batch.actions, batch.log_probs, advantages, entropy_coef)
        return agent.actor_closure(batch, old_dist, advantages, entropy_coef, inputs)()

    optimizer = agent.actor_optimizer
    group = optimizer.param_groups[0]
    num_params = sum(p.numel() for p in params)
    print(
        f"batch {batch.obs.shape[0]} samples, {num_params} actor parameters, cg_iters {group['cg_iters']}, "
        f"{args.threads} torch thread(s), {args.repeats} repeats\n"
    )

    def restore() -> None:
        with torch.no_grad():
            for p, saved in zip(params, theta_old):
                p.copy_(saved)

    adam = build_optimizer(params, {"name": "adam", "lr": 1e-4}, key="adam")

    def adam_step_ms() -> float:
        """One Adam step from θ_old (forward, surrogate, backward, step), in ms."""
        restore()
        start = time.perf_counter()
        loss, _ = closure()
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        return 1000.0 * (time.perf_counter() - start)

    # Each trust-region step is timed right after an Adam step, and its "× Adam" is the ratio of the
    # two medians: the host's speed drifts (a shared VM), and the ratio should not.
    all_adam: list[float] = []
    table = []
    rows = [(name, "cg") for name in METRIC_ORDER]
    rows += [(name, solver) for solver, metrics in SOLVER_METRICS.items() if solver != "cg" for name in metrics]
    for name, solver in rows:
        group["metric"], group["solver"] = name, solver
        medians, ratios, stats = {}, {}, None
        for line_search in (True, False):
            group["line_search"] = line_search
            times, adam_times = [], []
            for repeat in range(args.repeats + 1):
                adam_ms = adam_step_ms()
                restore()
                inputs = actor_metric_inputs(agent.actor, batch.obs, batch.actions, batch.log_probs, advantages, entropy_coef)
                step_closure = agent.actor_closure(batch, old_dist, advantages, entropy_coef, inputs)
                start = time.perf_counter()
                optimizer.step(step_closure, inputs)
                elapsed = time.perf_counter() - start
                stats = optimizer.last_stats
                if repeat > 0:  # the first step warms up allocations and torch.func's tracing
                    times.append(1000.0 * elapsed)
                    adam_times.append(adam_ms)
            medians[line_search] = statistics.median(times)
            ratios[line_search] = medians[line_search] / statistics.median(adam_times)
            all_adam += adam_times
        assert stats is not None
        cg = f"{stats.cg_iterations}" if solver == "cg" else "–"
        table.append(
            f"| `{name}` | `{solver}` | {medians[True]:.1f} | {ratios[True]:.1f} | {medians[False]:.1f} "
            f"| {ratios[False]:.1f} | {cg} | {'yes' if stats.negative_curvature else 'no'} |"
        )
    adam_ms = statistics.median(all_adam)
    print("| metric | solver | ms/step, line search | × Adam | ms/step, no line search | × Adam | CG iterations | negative curvature |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    print(f"| Adam step (reference) | – | {adam_ms:.1f} | 1.0 | {adam_ms:.1f} | 1.0 | – | – |")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
