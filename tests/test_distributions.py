"""Closed-form Categorical / DiagGaussian against torch.distributions, plus sampling statistics."""

from __future__ import annotations

import math

import pytest
import torch
from gymnasium import spaces
from torch import distributions as td

from rlopt.distributions import Categorical, DiagGaussian
from rlopt.networks import Actor

BATCH = 32
NUM_ACTIONS = 6
ACTION_DIM = 3
F64_TOL = {"rtol": 1e-12, "atol": 1e-12}


def _random_logits(seed: int, scale: float = 2.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(BATCH, NUM_ACTIONS, generator=gen, dtype=torch.float64)


def _random_gaussian_params(seed: int, per_row_std: bool) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mean = torch.randn(BATCH, ACTION_DIM, generator=gen, dtype=torch.float64)
    std_shape = (BATCH, ACTION_DIM) if per_row_std else (ACTION_DIM,)
    log_std = 0.5 * torch.randn(*std_shape, generator=gen, dtype=torch.float64)
    return mean, log_std


def _torch_gaussian(mean: torch.Tensor, log_std: torch.Tensor) -> td.Distribution:
    return td.Independent(td.Normal(mean, log_std.exp().expand_as(mean)), 1)


# --- Categorical -----------------------------------------------------------------------------


def test_categorical_log_prob_entropy_mode_match_torch() -> None:
    logits = _random_logits(0)
    ours, ref = Categorical(logits), td.Categorical(logits=logits)
    actions = torch.randint(NUM_ACTIONS, (BATCH,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours.log_prob(actions), ref.log_prob(actions), **F64_TOL)
    torch.testing.assert_close(ours.entropy(), ref.entropy(), **F64_TOL)
    torch.testing.assert_close(ours.probs, ref.probs, **F64_TOL)
    torch.testing.assert_close(ours.mode(), logits.argmax(-1))
    # int32 actions (e.g. straight from a numpy buffer) index the same entries
    torch.testing.assert_close(ours.log_prob(actions.int()), ref.log_prob(actions), **F64_TOL)


def test_categorical_masked_logits_give_finite_entropy_matching_torch() -> None:
    logits = _random_logits(2)
    logits[:, :2] = -math.inf  # two actions masked out
    ours, ref = Categorical(logits), td.Categorical(logits=logits)
    assert torch.isfinite(ours.entropy()).all()
    torch.testing.assert_close(ours.entropy(), ref.entropy(), **F64_TOL)
    other = Categorical(_random_logits(3))
    expected_kl = td.kl_divergence(ref, td.Categorical(logits=other.log_probs))
    torch.testing.assert_close(ours.kl(other), expected_kl, **F64_TOL)


def test_categorical_kl_matches_torch() -> None:
    p_logits, q_logits = _random_logits(4), _random_logits(5)
    expected = td.kl_divergence(td.Categorical(logits=p_logits), td.Categorical(logits=q_logits))
    assert expected.shape == (BATCH,)
    torch.testing.assert_close(Categorical(p_logits).kl(Categorical(q_logits)), expected, **F64_TOL)


# --- DiagGaussian ----------------------------------------------------------------------------


@pytest.mark.parametrize("per_row_std", [False, True], ids=["log_std[d]", "log_std[B,d]"])
def test_diag_gaussian_log_prob_entropy_kl_match_independent_normal(per_row_std: bool) -> None:
    mean_p, log_std_p = _random_gaussian_params(10, per_row_std)
    mean_q, log_std_q = _random_gaussian_params(11, per_row_std)
    ours_p, ours_q = DiagGaussian(mean_p, log_std_p), DiagGaussian(mean_q, log_std_q)
    ref_p, ref_q = _torch_gaussian(mean_p, log_std_p), _torch_gaussian(mean_q, log_std_q)
    actions = ref_p.sample()

    for ours, ref in ((ours_p.log_prob(actions), ref_p.log_prob(actions)),
                      (ours_p.entropy(), ref_p.entropy()),
                      (ours_p.kl(ours_q), td.kl_divergence(ref_p, ref_q))):
        assert ours.shape == (BATCH,)
        torch.testing.assert_close(ours, ref, **F64_TOL)
    torch.testing.assert_close(ours_p.mode(), mean_p)


def test_diag_gaussian_shared_log_std_broadcasts_like_expanded_one() -> None:
    mean_p, log_std_p = _random_gaussian_params(12, per_row_std=False)
    mean_q, log_std_q = _random_gaussian_params(13, per_row_std=True)
    shared = DiagGaussian(mean_p, log_std_p)
    expanded = DiagGaussian(mean_p, log_std_p.expand(BATCH, ACTION_DIM).clone())
    other = DiagGaussian(mean_q, log_std_q)
    actions = mean_q
    torch.testing.assert_close(shared.log_prob(actions), expanded.log_prob(actions), **F64_TOL)
    torch.testing.assert_close(shared.entropy(), expanded.entropy(), **F64_TOL)
    torch.testing.assert_close(shared.kl(other), expanded.kl(other), **F64_TOL)
    torch.testing.assert_close(other.kl(shared), other.kl(expanded), **F64_TOL)
    assert shared.entropy().shape == (BATCH,)


# --- KL properties -------------------------------------------------------------------------


AnyDistribution = Categorical | DiagGaussian


def _distribution_pair(kind: str, seed: int) -> tuple[AnyDistribution, AnyDistribution]:
    if kind == "categorical":
        return Categorical(_random_logits(seed)), Categorical(_random_logits(seed + 1))
    return (DiagGaussian(*_random_gaussian_params(seed, per_row_std=True)),
            DiagGaussian(*_random_gaussian_params(seed + 1, per_row_std=False)))


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_kl_with_itself_is_zero_and_kl_is_nonnegative(kind: str) -> None:
    for seed in range(0, 40, 2):
        p, q = _distribution_pair(kind, seed)
        torch.testing.assert_close(p.kl(p), torch.zeros(BATCH, dtype=torch.float64), rtol=0, atol=1e-12)
        assert (p.kl(q) >= 0).all() and (q.kl(p) >= 0).all()
        assert (p.kl(q) > 1e-6).all()  # distinct random distributions are strictly apart


def test_categorical_kl_gradient_wrt_second_argument_matches_torch() -> None:
    p_logits = _random_logits(20)
    q_logits = _random_logits(21).requires_grad_()
    Categorical(p_logits).detach().kl(Categorical(q_logits)).sum().backward()
    ours_grad, q_logits.grad = q_logits.grad, None
    td.kl_divergence(td.Categorical(logits=p_logits), td.Categorical(logits=q_logits)).sum().backward()
    assert ours_grad is not None and ours_grad.abs().max() > 1e-3
    torch.testing.assert_close(ours_grad, q_logits.grad, **F64_TOL)


def test_diag_gaussian_kl_gradient_wrt_second_argument_matches_torch() -> None:
    mean_p, log_std_p = _random_gaussian_params(22, per_row_std=False)
    mean_q, log_std_q = _random_gaussian_params(23, per_row_std=False)
    mean_q.requires_grad_()
    log_std_q.requires_grad_()
    DiagGaussian(mean_p, log_std_p).kl(DiagGaussian(mean_q, log_std_q)).sum().backward()
    ours_grads = (mean_q.grad, log_std_q.grad)
    mean_q.grad = log_std_q.grad = None
    ref_kl = td.kl_divergence(_torch_gaussian(mean_p, log_std_p), _torch_gaussian(mean_q, log_std_q))
    ref_kl.sum().backward()
    for ours, ref in zip(ours_grads, (mean_q.grad, log_std_q.grad)):
        assert ours is not None and ours.abs().max() > 1e-3
        torch.testing.assert_close(ours, ref, **F64_TOL)


def test_detach_cuts_graph_and_keeps_values() -> None:
    logits = _random_logits(30).requires_grad_()
    cat = Categorical(logits)
    assert cat.log_probs.requires_grad and not cat.detach().log_probs.requires_grad
    torch.testing.assert_close(cat.detach().log_probs, cat.log_probs.detach())
    mean, log_std = (t.requires_grad_() for t in _random_gaussian_params(31, per_row_std=False))
    gauss = DiagGaussian(mean, log_std).detach()
    assert not gauss.mean.requires_grad and not gauss.log_std.requires_grad
    torch.testing.assert_close(gauss.mean, mean.detach())


def _box_actor_and_obs() -> tuple[Actor, torch.Tensor]:
    torch.manual_seed(0)
    actor = Actor(3, spaces.Box(-2.0, 2.0, shape=(ACTION_DIM,)), hidden=(8,), log_std_init=-0.5)
    return actor, torch.randn(BATCH, 3)


def _gaussian_kl(mean_p, log_std_p, mean_q, log_std_q) -> torch.Tensor:
    return td.kl_divergence(_torch_gaussian(mean_p, log_std_p), _torch_gaussian(mean_q, log_std_q))


def test_detached_gaussian_is_a_copy_that_an_in_place_step_of_log_std_does_not_move() -> None:
    """π_old = actor(obs).detach() stays π_old while the optimizer steps the actor's log-std (an
    nn.Parameter the live distribution holds itself) in place: KL(π_old‖π_θ) sees that step."""
    actor, obs = _box_actor_and_obs()
    with torch.no_grad():
        old = actor(obs).detach()
    old_mean, old_log_std = actor(obs).mean.detach().clone(), actor.log_std.detach().clone()
    optimizer = torch.optim.SGD([actor.log_std], lr=0.1)  # only log_std moves: the means stay put
    actor.log_std.grad = torch.ones_like(actor.log_std)
    optimizer.step()
    assert not torch.equal(actor.log_std.detach(), old_log_std)
    with torch.no_grad():
        new = actor(obs)
        kl = old.kl(new)
    expected = _gaussian_kl(old_mean, old_log_std, new.mean, new.log_std)
    torch.testing.assert_close(kl, expected, rtol=1e-5, atol=1e-7)
    assert (kl > 1e-4).all()  # σ shrank by e^-0.1 in every dimension: KL = 3·(e^0.2 − 1 − 0.2)/2 per row
    torch.testing.assert_close(old.log_std, old_log_std, rtol=0, atol=0)
    torch.testing.assert_close(old[torch.arange(4)].kl(new[torch.arange(4)]), expected[:4], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(old[2:5].log_std, old_log_std, rtol=0, atol=0)


def test_detached_distributions_do_not_share_storage_with_their_source() -> None:
    """Any later in-place change of the source's tensors (a parameter step, a reused buffer) leaves
    the detached copy as it was, for a state-independent and a per-row log-std alike."""
    for per_row_std in (False, True):
        mean, log_std = _random_gaussian_params(32, per_row_std)
        old = DiagGaussian(mean, log_std).detach()
        before = (old.mean.clone(), old.log_std.clone())
        mean.add_(1.0)
        log_std.add_(1.0)
        for kept, value in zip((old.mean, old.log_std), before):
            torch.testing.assert_close(kept, value, rtol=0, atol=0)
    logits = _random_logits(33)
    cat = Categorical(logits)
    old_cat = cat.detach()
    before = old_cat.log_probs.clone()
    cat.log_probs.add_(1.0)
    torch.testing.assert_close(old_cat.log_probs, before, rtol=0, atol=0)


# --- Sampling ------------------------------------------------------------------------------


def test_sampling_is_reproducible_under_manual_seed() -> None:
    cat = Categorical(_random_logits(50))
    gauss = DiagGaussian(*_random_gaussian_params(51, per_row_std=False))
    torch.manual_seed(123)
    first = (cat.sample(), gauss.sample())
    torch.manual_seed(123)
    second = (cat.sample(), gauss.sample())
    third = (cat.sample(), gauss.sample())
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(first[1], third[1])  # the RNG advances between draws
    assert first[0].dtype == torch.int64 and first[0].shape == (BATCH,)
    assert first[1].shape == (BATCH, ACTION_DIM) and not first[1].requires_grad


def test_categorical_sample_frequencies_match_probs() -> None:
    num_draws = 200_000
    probs = torch.tensor([0.05, 0.1, 0.15, 0.2, 0.5], dtype=torch.float64)
    dist = Categorical(probs.log().expand(num_draws, -1))
    torch.manual_seed(0)
    counts = torch.bincount(dist.sample(), minlength=probs.numel()).double()
    std_error = (probs * (1 - probs) / num_draws).sqrt()
    assert ((counts / num_draws - probs).abs() < 5 * std_error).all()


def test_diag_gaussian_sample_mean_and_std_match_parameters() -> None:
    num_draws = 200_000
    mean = torch.tensor([-1.0, 0.0, 2.5], dtype=torch.float64)
    std = torch.tensor([0.1, 1.0, 3.0], dtype=torch.float64)
    dist = DiagGaussian(mean.expand(num_draws, -1), std.log())
    torch.manual_seed(0)
    draws = dist.sample()
    # 5 standard errors: SE(mean) = σ/√N, SE(std) ≈ σ/√(2N) for Gaussian data
    assert ((draws.mean(0) - mean).abs() < 5 * std / math.sqrt(num_draws)).all()
    assert ((draws.std(0) - std).abs() < 5 * std / math.sqrt(2 * num_draws)).all()


def test_categorical_by_log_softmax_is_categorical_up_to_rounding():
    """The stacked fast path's normalisation (``log_softmax``) against ``logits − logsumexp``,
    masked (−inf) actions included: entropy and KL stay finite."""
    logits = torch.randn(4, 7, 3) * 5
    logits[0, 0, 1] = -torch.inf
    ours, reference = Categorical.by_log_softmax(logits), Categorical(logits)
    torch.testing.assert_close(ours.log_probs, reference.log_probs, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours.entropy(), reference.entropy(), rtol=1e-5, atol=1e-6)
    assert torch.isfinite(ours.kl(reference)).all() and torch.isfinite(ours.entropy()).all()
