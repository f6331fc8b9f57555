"""The stacked fast paths (``exact: false``, issue 17) against the forms they replace: the fused
tanh layer bit for bit, the narrow-input and single-output gradients and the all-at-once clipping
within float rounding, the minibatch plan number for number."""

from __future__ import annotations

import pytest
import torch
from gymnasium import spaces

from rlopt.gradient_steps import minibatches
from rlopt.networks import Actor, Critic
from rlopt.stacked.batch import plan_minibatches
from rlopt.stacked.clipping import clip_flat_grad_norms_per_seed, clip_flat_grads_per_seed_at_once
from rlopt.stacked.networks import StackedActor, StackedCritic
from rlopt.stacked.tanh_mlp import _input_gradient, _tanh_by_sigmoid, _tanh_layer, _weight_gradient


@pytest.mark.parametrize("k,rows,n_in", [(1, 1, 4), (3, 8, 3), (10, 40, 64), (4, 256, 4)])
def test_tanh_layer_is_the_four_pass_tanh_bit_for_bit(k, rows, n_in):
    """2σ(2b + 2xWᵀ) − 1 with the doubling inside the ``baddbmm`` is exact: the same floats."""
    generator = torch.Generator().manual_seed(k * rows)
    x, weight_t = torch.randn(k, rows, n_in, generator=generator), torch.randn(k, n_in, 64, generator=generator)
    bias = torch.randn(k, 1, 64, generator=generator) * 3
    assert torch.equal(_tanh_layer(bias, x, weight_t), _tanh_by_sigmoid(torch.baddbmm(bias, x, weight_t)))


def test_rollout_forward_is_the_training_forward_bit_for_bit():
    """An actor acting without gradients (fused tanh layers) gives the numbers of its differentiable
    forward (:class:`_TanhMLP`), so π_old of a rollout is the policy the update starts from (a
    critic's single output takes another product when acting: equal up to rounding)."""
    torch.manual_seed(3)
    actor = StackedActor([Actor(4, spaces.Discrete(2), hidden=(64, 64)) for _ in range(3)], exact=False)
    critic = StackedCritic([Critic(4, hidden=(64, 64)) for _ in range(3)], exact=False)
    obs = torch.randn(3, 8, 4)
    with torch.no_grad():
        acting, values = actor.head(obs), critic(obs)
    assert actor.bind().tanh_mlp is not None  # with gradients: the one-node path
    assert torch.equal(actor.head(obs).detach(), acting)
    torch.testing.assert_close(critic(obs).detach(), values, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n_in", [3, 4, 15, 16, 64])
def test_weight_gradient_is_g_transposed_h(n_in):
    grad, inputs = torch.randn(5, 33, 64), torch.randn(5, 33, n_in)
    expected = torch.einsum("kbo,kbi->koi", grad.double(), inputs.double()).float()
    torch.testing.assert_close(_weight_gradient(grad, inputs), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("outputs", [1, 2, 64])
def test_input_gradient_is_g_w(outputs):
    grad, weight = torch.randn(5, 33, outputs), torch.randn(5, outputs, 64)
    torch.testing.assert_close(_input_gradient(grad, weight), torch.bmm(grad, weight), rtol=1e-5, atol=1e-5)


def test_clipping_every_network_at_once_is_the_per_tensor_clipping_up_to_rounding():
    """Per seed and network: the norm of the flat gradient (padding is 0) is the norm over its
    tensors, and each network is clipped to its own limit (None: measured only)."""
    torch.manual_seed(9)
    actor = StackedActor([Actor(3, spaces.Discrete(2), hidden=(16,)) for _ in range(3)])
    critic = StackedCritic([Critic(3, hidden=(16,)) for _ in range(3)])
    grads = []
    for network in (actor, critic):
        flat = [torch.zeros_like(leaf) for leaf in network.leaves()]
        for k, g in enumerate(flat):
            for view in network.flat.split(g):
                view.copy_(torch.randn_like(view) * 10 ** (k - 2))  # seed 0 below the limit, 1 and 2 above
        grads.append(flat)
    expected = [[g.clone() for g in grads[0]], [g.clone() for g in grads[1]]]
    expected_norms = torch.stack([clip_flat_grad_norms_per_seed(expected[0], actor.flat.segments, 0.5),
                                  clip_flat_grad_norms_per_seed(expected[1], critic.flat.segments, None)])  # fmt: skip
    norms = clip_flat_grads_per_seed_at_once(grads, [0.5, None])
    torch.testing.assert_close(norms, expected_norms, rtol=1e-6, atol=0)
    for ours, theirs in zip(grads[0] + grads[1], expected[0] + expected[1]):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-9)
    assert norms[0, 0] < 0.5 < norms[0, 1]  # the test clips some seeds and not others


@pytest.mark.parametrize("sizes,width", [([40, 40, 40], 0), ([256, 0, 3, 256], 256), ([2048, 1000, 2047], 64)])
def test_minibatch_plan_chunks_as_alone(sizes, width):
    rows = max(sizes)
    active = [size != 1000 for size in sizes]
    generators = [torch.Generator().manual_seed(s) for s in range(len(sizes))]
    plan = plan_minibatches(sizes, rows, width, generators, active)
    for k, size in enumerate(sizes):
        lone = list(minibatches(size, width, torch.Generator().manual_seed(k))) if active[k] and size else []
        assert [c[k] for c in plan.counts] == [len(c) for c in lone] + [0] * (len(plan.counts) - len(lone))
        for j, chunk in enumerate(lone):
            assert torch.equal(plan.positions[j][k, : len(chunk)], chunk)
            assert int(plan.masks[j][k].sum()) == len(chunk)
