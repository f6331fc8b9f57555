"""The stacked update of REINFORCE / A2C (``agents.base.Agent``: one actor step on the whole batch,
then the critic's regression epochs) and of PPO (``agents.ppo.PPO.optimize``: epochs x minibatches
of one actor + critic step), seed by seed exactly as alone, on ``[K, ...]`` tensors.

Per gradient step, with ``participating`` the seeds that have rows in it and have not stopped:
one backward of the sum of the participating seeds' losses, per-seed clipping, then every seed
that did not step (not participating, or a non-finite gradient) gets ``grad = None`` so that the
optimizers leave its tensors and states untouched. A seed with a non-finite observation, advantage
or gradient stops stepping and is restored from the snapshot taken at the start of the update
(the lone trainer's all-or-nothing rule, per seed).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from rlopt.distributions import ActionDistribution
from rlopt.learner import UpdateStats
from rlopt.losses import masked_mean, normalize, policy_gradient_loss, ppo_clip_loss, value_loss
from rlopt.stacked.batch import StackedBatch, draw_permutations, plan_minibatches, take_distribution, take_rows
from rlopt.stacked.clipping import clip_flat_grad_norms_per_seed, clip_flat_grads_per_seed_at_once
from rlopt.stacked.trust_region import TRUST_REGION_AGENTS, trust_region_step


NetworkStep = tuple[torch.optim.Optimizer, Any, "float | None"]
"""(the optimizer over every seed's flat leaf, the stacked network, max gradient norm or None)."""
Info = dict[str, tuple["Tensor | float", "Tensor | None"]]
"""Statistics by name: ``[K]`` values and ``[K]`` bool "measured" (or a float shared by the seeds, None)."""


class _Totals:
    """Per-seed lists of per-step ``[K]`` values, averaged over the steps each seed took."""

    def __init__(self) -> None:
        self.values: dict[str, list[Tensor]] = {}
        self.taken: dict[str, list[Tensor]] = {}

    def add(self, name: str, value: Tensor, taken: Tensor) -> None:
        self.values.setdefault(name, []).append(value.detach())
        self.taken.setdefault(name, []).append(taken)

    def means(self) -> Info:
        """``{name: (mean over taken steps [K], any step taken [K] bool)}``."""
        out = {}
        for name, values in self.values.items():
            taken = torch.stack(self.taken[name])
            stacked = torch.where(taken, torch.stack(values), 0.0)
            out[name] = (stacked.sum(0) / taken.sum(0).clamp(min=1), taken.any(0))
        return out


def _gradient_step(loss: Tensor | None, stepping: Tensor, *networks: NetworkStep) -> tuple[list[Tensor], Tensor]:
    """Backward of ``loss[stepping].sum()``, per-seed clip of each (optimizer, stacked network, max
    norm) -- the norm over the seed's parameter tensors, as alone -- and ``grad = None`` for every
    seed that does not step; step. Returns the ``[K]`` norms and the ``[K]`` bool of the seeds
    that stepped (among ``stepping``, those whose norms were all finite). ``loss=None``: the caller
    has zeroed the gradients (:func:`_zero_grads`) and run the backward."""
    if loss is not None:
        _zero_grads(*networks)
        loss[stepping].sum().backward()
    flat_grads = [[leaf.grad if leaf.grad is not None else torch.zeros_like(leaf) for leaf in network.leaves()]
                  for _, network, _ in networks]  # fmt: skip
    if any(network.exact for _, network, _ in networks):  # per tensor, as alone
        norms = [clip_flat_grad_norms_per_seed(grads, network.flat.segments, max_norm)
                 for grads, (_, network, max_norm) in zip(flat_grads, networks)]  # fmt: skip
        stacked_norms = torch.stack(norms)
    else:  # per seed's flat gradient, every network at once (the same norms up to float rounding)
        stacked_norms = clip_flat_grads_per_seed_at_once(flat_grads, [max_norm for _, _, max_norm in networks])
        norms = list(stacked_norms.unbind())
    finite = stepping & torch.isfinite(stacked_norms).all(0)
    keep = finite.tolist()
    for _, network, _ in networks:
        for leaf, kept in zip(network.leaves(), keep):
            if not kept:
                leaf.grad = None
    if any(keep):
        for optimizer, _, _ in networks:
            optimizer.step()
    return norms, finite


def _zero_grads(*networks: NetworkStep) -> None:
    """``optimizer.zero_grad(set_to_none=True)``: each network's leaves are its optimizer's."""
    for _, network, _ in networks:
        for leaf in network.leaves():
            leaf.grad = None


def _finite_rows(batch: StackedBatch) -> Tensor:
    """``[K]``: every observation and advantage of the seed is finite (else its update is skipped)."""
    return torch.isfinite(batch.obs).flatten(1).all(1) & torch.isfinite(batch.advantages).all(1)


def _one_step_per_seed(learner: Any, batch: StackedBatch) -> bool:
    """The update is one gradient step per seed: REINFORCE, or A2C's actor step with a critic fit of one
    full-batch step (one backward for both). A seed then steps all or nothing (a non-finite gradient
    steps neither network), so no seed needs rolling back and the update takes no snapshot."""
    cfg = learner.cfg
    if cfg.agent in ("ppo", *TRUST_REGION_AGENTS):
        return False
    return learner.critic is None or (cfg.critic.updates == 1 and not 0 < cfg.critic.minibatch_size < batch.rows)


def stacked_update(learner: Any, batch: StackedBatch) -> list[UpdateStats]:
    """One update of every seed (the lone ``Agent.update``, per seed); each seed's ``UpdateStats``."""
    one_step = _one_step_per_seed(learner, batch)
    if not one_step:
        learner.snapshots.take()
    ok = _finite_rows(batch) & torch.tensor([s > 0 and not f for s, f in zip(batch.sizes, learner.frozen)])
    if learner.cfg.agent not in ("ppo", *TRUST_REGION_AGENTS):  # π_old is its actor step's own forward
        info, ok, old_dist = _actor_critic_optimize(learner, batch, ok)
    else:
        with torch.no_grad():
            old_dist = learner.actor(batch.obs).detach()
        if learner.cfg.agent == "ppo":
            info, ok = _ppo_optimize(learner, batch, old_dist, ok)
        else:  # NPG.optimize: the trust-region step, then the critic's fit
            info, ok = trust_region_step(learner, batch, old_dist, ok)
            if learner.critic is not None:
                critic_info, ok = _fit_critic(learner, batch, ok)
                info.update(critic_info)
    skipped = [not flag for flag in ok.tolist()]
    for k, is_skipped in enumerate(skipped):
        if is_skipped and not one_step:
            learner.snapshots.restore(k)
    with torch.no_grad():
        kl = masked_mean(old_dist.kl(learner.actor(batch.obs)), batch.mask)
        if learner.critic is not None:
            info["critic_explained_variance"] = (_explained_variance(learner.critic(batch.obs), batch.returns, batch.mask), ok)
    info["actor_kl"] = (kl, ok)
    if "actor_kl_max" in info:
        kl_max, has = info["actor_kl_max"]
        info["actor_kl_max"] = (torch.where(has, torch.maximum(kl_max, kl), kl), ok)
    else:
        info["actor_kl_max"] = (kl, ok)
    stats = _per_seed_stats(info, skipped)
    for s in stats:
        s.actor_lr = learner.actor_optimizer.param_groups[0]["lr"]
        if learner.critic_optimizer is not None:
            s.critic_lr = learner.critic_optimizer.param_groups[0]["lr"]
    learner.step_schedules()
    return stats


def _per_seed_stats(info: Info, skipped: Sequence[bool]) -> list[UpdateStats]:
    """Seed ``k``'s ``UpdateStats`` from ``{name: (values [K] or a float, recorded [K] bool)}`` with one
    host transfer; a skipped (rolled-back) seed records nothing."""
    names = [n for n, (v, _) in info.items() if isinstance(v, Tensor)]
    table = torch.stack([info[n][0].float() for n in names]).tolist() if names else []
    recorded = torch.stack([info[n][1] for n in names]).tolist() if names else []
    stats = []
    for k, is_skipped in enumerate(skipped):
        s = UpdateStats(skipped=is_skipped)
        if not is_skipped:
            values = {n: table[i][k] for i, n in enumerate(names) if recorded[i][k]}
            values.update({n: float(v) for n, (v, _) in info.items() if not isinstance(v, Tensor)})
            s.record(values)
        stats.append(s)
    return stats


def _explained_variance(predictions: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """``rlopt.losses.explained_variance`` per seed over its real rows, ``[K]``."""

    def variance(x: Tensor) -> Tensor:
        return masked_mean((x - masked_mean(x, mask).unsqueeze(-1)).square(), mask)

    return 1.0 - variance(targets - predictions) / variance(targets)


def _advantages(batch_advantages: Tensor, mask: Tensor, enabled: bool) -> Tensor:
    return normalize(batch_advantages, mask=mask) if enabled else batch_advantages


def _minibatches(
    learner: Any, batch: StackedBatch, minibatch_size: int, active: Tensor
) -> Iterator[tuple[Tensor | None, Tensor, Tensor]]:
    """One epoch's minibatches (:func:`plan_minibatches`, drawn for the ``active`` seeds):
    ``(positions [K, W], mask [K, W], seeds with rows in it [K])``, those with no such seed skipped.
    Not ``stack_exact``, an epoch of one minibatch is the batch in place (``positions=None``): its losses
    are means over the rows, the same up to float rounding in any order; the permutations are drawn all
    the same (each seed's stream stays its lone run's)."""
    if not learner.cfg.stack_exact and not 0 < minibatch_size < batch.rows:
        draw_permutations(batch.sizes, learner.generators, active.tolist())
        participating = active & torch.tensor([size > 0 for size in batch.sizes])
        if bool(participating.any()):
            yield None, batch.mask & participating.unsqueeze(1), participating
        return
    plan = plan_minibatches(batch.sizes, batch.rows, minibatch_size, learner.generators, active.tolist())
    for positions, mask, counts in zip(plan.positions, plan.masks, plan.counts):
        participating = active & torch.tensor([c > 0 for c in counts])
        if bool(participating.any()):
            yield positions, mask, participating


def _actor_critic_optimize(learner: Any, batch: StackedBatch, ok: Tensor) -> tuple[Info, Tensor, ActionDistribution]:
    """``Agent.optimize``: one actor step on the whole batch, then ``critic.updates`` epochs of
    minibatches of ``critic.minibatch_size`` (a seed whose actor step failed fits no critic).
    Also returns π_old: the actor step's forward, detached (the values a no-grad pass gives)."""
    cfg, agent = learner.cfg, learner.agents[0]
    entropy_coef = learner.coefficient("entropy_coef")
    dist = learner.actor(batch.obs)
    advantages = _advantages(batch.advantages, batch.mask, agent.normalize_advantage)
    loss, info = policy_gradient_loss(dist.log_prob(batch.actions), advantages, dist.entropy(), entropy_coef, mask=batch.mask)
    actor_step = (learner.actor_optimizer, learner.actor, cfg.actor.max_grad_norm)
    out: Info = {"actor_loss": (loss, ok), "actor_entropy": (info["entropy"], ok), "schedule/entropy_coef": (entropy_coef, None)}
    if learner.critic is not None and _one_step_per_seed(learner, batch):
        critic_info, ok = _actor_and_critic_step(learner, batch, loss, ok, actor_step)
        out.update(critic_info)
        return {name: (value, ok if taken is not None else None) for name, (value, taken) in out.items()}, ok, dist.detach()
    (grad_norm,), ok = _gradient_step(loss, ok, actor_step)
    out = {**{name: (value, ok if taken is not None else None) for name, (value, taken) in out.items()}, "actor_grad_norm": (grad_norm, ok)}
    if learner.critic is None:
        return out, ok, dist.detach()
    critic_info, ok = _fit_critic(learner, batch, ok)
    return {**out, **critic_info}, ok, dist.detach()


def _actor_and_critic_step(
    learner: Any, batch: StackedBatch, actor_loss: Tensor, ok: Tensor, actor_step: NetworkStep
) -> tuple[Info, Tensor]:
    """The actor step and a critic fit of one step on the whole batch (A2C's default) with one backward
    of the sum of both losses (disjoint parameters: each gets its own gradient), as
    :func:`rlopt.gradient_steps.gradient_steps` does for PPO. Seed by seed the outcome is the lone
    two-step update's: a seed whose actor gradient is non-finite steps neither network and draws no
    critic permutation (its generator is put back), one whose critic gradient is non-finite is
    rolled back by the caller."""
    cfg = learner.cfg
    generators = [g.get_state() for g in learner.generators]
    planned = next(_minibatches(learner, batch, cfg.critic.minibatch_size, ok), None)
    if planned is None:  # no seed steps
        return {}, ok
    positions, mask, stepping = planned
    vloss, _ = value_loss(learner.critic(take_rows(batch.obs, positions)), take_rows(batch.returns, positions), mask=mask)
    (grad_norm, vgrad_norm), finite = _gradient_step(
        actor_loss + vloss, stepping, actor_step, (learner.critic_optimizer, learner.critic, cfg.critic.max_grad_norm)
    )
    actor_failed = (stepping & ~torch.isfinite(grad_norm)).tolist()
    for generator, state, failed in zip(learner.generators, generators, actor_failed):
        if failed:  # alone, the update ended before the critic's permutation was drawn
            generator.set_state(state)
    ok = ok & finite
    return {"actor_grad_norm": (grad_norm, ok), "critic_loss": (vloss, ok), "critic_grad_norm": (vgrad_norm, ok)}, ok


def _fit_critic(learner: Any, batch: StackedBatch, ok: Tensor) -> tuple[Info, Tensor]:
    """``A2C.fit_critic`` per seed: ``critic.updates`` epochs of minibatches of ``critic.minibatch_size``
    for the seeds in ``ok`` (a seed with a non-finite step stops and leaves ``ok``)."""
    cfg = learner.cfg
    totals = _Totals()
    for _ in range(cfg.critic.updates):
        for positions, mask, stepping in _minibatches(learner, batch, cfg.critic.minibatch_size, ok):
            values = learner.critic(take_rows(batch.obs, positions))
            vloss, _ = value_loss(values, take_rows(batch.returns, positions), mask=mask)
            (vgrad,), finite = _gradient_step(
                vloss, stepping, (learner.critic_optimizer, learner.critic, cfg.critic.max_grad_norm)
            )
            ok = ok & ~(stepping & ~finite)  # a seed's non-finite step ends its update (rolled back)
            totals.add("critic_loss", vloss, finite)
            totals.add("critic_grad_norm", vgrad, finite)
    return totals.means(), ok


def _ppo_optimize(learner: Any, batch: StackedBatch, old_dist: ActionDistribution, ok: Tensor) -> tuple[Info, Tensor]:
    """``PPO.optimize`` per seed: epochs x minibatches; a seed whose minibatch KL exceeds
    ``ppo.target_kl`` stops (that minibatch does not step), as does one with a non-finite gradient."""
    cfg = learner.cfg
    clip, entropy_coef = learner.coefficient("ppo.clip"), learner.coefficient("entropy_coef")
    active = ok.clone()
    totals = _Totals()
    in_place_advantages: Tensor | None = None  # the batch in place: each seed's the same every epoch
    steps = ((learner.actor_optimizer, learner.actor, cfg.actor.max_grad_norm),
             (learner.critic_optimizer, learner.critic, cfg.critic.max_grad_norm))  # fmt: skip
    for _ in range(cfg.ppo.epochs):
        for positions, mask, participating in _minibatches(learner, batch, cfg.ppo.minibatch_size, active):
            participating = participating & active  # a seed stopped earlier in this epoch
            if not bool(participating.any()):
                continue
            obs = take_rows(batch.obs, positions)
            dist = learner.actor(obs)
            if positions is not None:
                advantages = _advantages(take_rows(batch.advantages, positions), mask, cfg.ppo.normalize_advantage)
            else:  # normalised per seed over its rows: a stopped seed's row (masked out here) changes no other
                if in_place_advantages is None:
                    in_place_advantages = _advantages(batch.advantages, batch.mask, cfg.ppo.normalize_advantage)
                advantages = in_place_advantages
            loss, info = ppo_clip_loss(dist.log_prob(take_rows(batch.actions, positions)),
                                       take_rows(batch.log_probs, positions), advantages, dist.entropy(), clip,
                                       entropy_coef, mask=mask)  # fmt: skip
            with torch.no_grad():
                kl = masked_mean(take_distribution(old_dist, positions).kl(dist), mask)
            stepping = participating
            if cfg.ppo.target_kl is not None:
                stop = participating & (kl > cfg.ppo.target_kl)
                totals.add("actor_kl_max", kl, stop)
                active = active & ~stop
                stepping = participating & ~stop
                if not bool(stepping.any()):
                    continue
            # The actor's backward before the critic's forward, its activations still in cache (≈ 2% of
            # a K=10 step): disjoint parameters, so each network's gradient is exactly that of the sum.
            _zero_grads(*steps)
            loss[stepping].sum().backward()
            vloss, _ = value_loss(learner.critic(obs), take_rows(batch.returns, positions),
                                  take_rows(batch.values, positions), cfg.ppo.clip_value, mask=mask)  # fmt: skip
            vloss[stepping].sum().backward()
            (grad_norm, vgrad_norm), finite = _gradient_step(None, stepping, *steps)
            failed = stepping & ~finite
            ok, active = ok & ~failed, active & ~failed
            for name, value in (("actor_loss", loss), ("actor_entropy", info["entropy"]),
                                ("actor/clip_fraction", info["clip_fraction"]), ("actor_grad_norm", grad_norm),
                                ("critic_loss", vloss), ("critic_grad_norm", vgrad_norm), ("actor_kl_max", kl)):  # fmt: skip
                totals.add(name, value, finite)
    out = totals.means()
    if "actor_kl_max" in out:  # the max, not the mean, of the minibatches' KLs
        out["actor_kl_max"] = _kl_max(totals)
    return {**out, "schedule/ppo_clip": (clip, None), "schedule/entropy_coef": (entropy_coef, None)}, ok


def _kl_max(totals: _Totals) -> tuple[Tensor, Tensor]:
    taken = torch.stack(totals.taken["actor_kl_max"])
    values = torch.where(taken, torch.stack(totals.values["actor_kl_max"]), -torch.inf)
    return values.max(0).values, taken.any(0)
