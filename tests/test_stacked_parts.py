"""The pieces of rlopt.stacked against their lone counterparts: networks, losses on [K, B], per-seed
clipping, per-seed random draws, minibatch plans and per-seed rollback."""

from __future__ import annotations

import pytest
import torch
from gymnasium import spaces

from rlopt.clipping import clip_gradients
from rlopt.distributions import Categorical, DiagGaussian
from rlopt.gradient_steps import minibatches
from rlopt.losses import masked_mean, normalize, policy_gradient_loss, ppo_clip_loss, value_loss
from rlopt.networks import Actor, Critic
from rlopt.stacked.batch import plan_minibatches, take_rows
from rlopt.stacked.clipping import clip_flat_grad_norms_per_seed, clip_grad_norms_per_seed
from rlopt.stacked.networks import StackedActor, StackedCritic
from rlopt.stacked.tanh_mlp import fast_tanh
from rlopt.stacked.random import generator_from_global_state, sample_per_seed
from rlopt.stacked.snapshot import SeedSnapshots

BOX = spaces.Box(-2.0, 2.0, shape=(1,))


def _actors(space, k=3, squash=False):
    torch.manual_seed(0)
    return [Actor(3, space, hidden=(64, 64), squash_mean=squash) for _ in range(k)]


@pytest.mark.parametrize("space,squash", [(spaces.Discrete(3), False), (BOX, False), (BOX, True)])
@pytest.mark.parametrize("rows", [4, 64])
def test_stacked_actor_rows_equal_lone_forward(space, squash, rows):
    """Bit for bit at the presets' widths (64 x 64). Some other tiny shapes (e.g. 4 rows x 3 -> 16)
    take a small-matrix kernel alone that the batched product does not: equal there to rounding."""
    actors = _actors(space, squash=squash)
    for actor in actors:  # distinct log-stds per seed
        if actor.log_std is not None:
            actor.log_std.data.uniform_(-1, 0)
    stacked = StackedActor(actors)
    obs = torch.randn(3, rows, 3)
    dist = stacked(obs)
    for k, actor in enumerate(actors):
        lone = actor(obs[k])
        actions = lone.sample()
        assert torch.equal(stacked.head(obs)[k], actor._head(obs[k]))
        stacked_actions = actions.expand(3, *actions.shape)
        assert torch.equal(dist.log_prob(stacked_actions)[k], lone.log_prob(actions))
        assert torch.equal(dist.entropy()[k], lone.entropy())


@pytest.mark.parametrize("rows", [1, 5, 8, 64, 256])
def test_stacked_critic_rows_equal_lone_forward(rows):
    torch.manual_seed(1)
    critics = [Critic(3, hidden=(64, 64)) for _ in range(4)]
    obs = torch.randn(4, rows, 3)
    values = StackedCritic(critics)(obs)
    for k, critic in enumerate(critics):
        assert torch.equal(values[k], critic(obs[k]))


@pytest.mark.parametrize("rows", [5, 256])
def test_fast_forward_and_gradients_are_the_lone_ones_up_to_rounding(rows):
    """``exact=False`` (tanh as 2σ(2x)−1, batched single-output layers): values and gradients
    within float rounding of the lone modules' (measured here: ~2e-7 absolute)."""
    actors, critics = _actors(spaces.Discrete(3)), [Critic(3, hidden=(64, 64)) for _ in range(3)]
    obs = torch.randn(3, rows, 3)
    stacked_actor, stacked_critic = StackedActor(actors, exact=False), StackedCritic(critics, exact=False)
    head, values = stacked_actor.head(obs), stacked_critic(obs)
    (head.square().sum() + values.square().sum()).backward()
    for k, (actor, critic) in enumerate(zip(actors, critics)):
        lone_head, lone_values = actor._head(obs[k]), critic(obs[k])
        torch.testing.assert_close(head[k], lone_head, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(values[k], lone_values, rtol=1e-5, atol=1e-6)
        stacked_grads = [*stacked_actor.flat.split(stacked_actor.leaves()[k].grad),
                         *stacked_critic.flat.split(stacked_critic.leaves()[k].grad)]  # fmt: skip
        (lone_head.square().sum() + lone_values.square().sum()).backward()
        for ours, p in zip(stacked_grads, (*actor.parameters(), *critic.parameters())):
            torch.testing.assert_close(ours, p.grad, rtol=1e-4, atol=1e-5)
    x = torch.linspace(-20, 20, 4001)
    assert (fast_tanh(x) - torch.tanh(x)).abs().max() < 3e-7


@pytest.mark.parametrize("squash", [False, True])
def test_one_node_backward_is_the_graphs_backward_up_to_rounding(squash):
    """``_TanhMLP`` (one autograd node, hand-written chain rule) against the same stacked forward as a
    graph of torch ops: a Gaussian actor (its log-std a second use of the stack), a critic; the
    gradient again with ``retain_graph`` (as the Fisher product asks it); a double backward refused."""
    results = []
    for one_node in (True, False):
        actors, critics = _actors(BOX, squash=squash), [Critic(3, hidden=(64, 64)) for _ in range(3)]
        actor = StackedActor(actors, exact=False, one_node_backward=one_node)
        critic = StackedCritic(critics, exact=False, one_node_backward=one_node)
        assert (actor.layers.tanh_mlp is not None) is one_node
        obs = torch.randn(3, 50, 3, generator=torch.Generator().manual_seed(2))
        dist, values = actor(obs), critic(obs)
        loss = dist.log_prob(torch.ones(3, 50, 1)).sum() + dist.entropy().sum() + values.square().sum()
        theta = [*actor.leaves(), *critic.leaves()]
        first = torch.autograd.grad(loss, theta, retain_graph=True)
        again = torch.autograd.grad(loss, theta)
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        results.append(first)
    for ours, graph in zip(*results):
        torch.testing.assert_close(ours, graph, rtol=1e-5, atol=1e-6)
    critic = StackedCritic([Critic(3, hidden=(64, 64)) for _ in range(2)], exact=False)
    (grad,) = torch.autograd.grad(critic(torch.randn(2, 8, 3)).sum(), critic.leaves()[0], create_graph=True)
    with pytest.raises(RuntimeError, match="does not require grad|once_differentiable"):  # loud, never a wrong Hessian
        grad.sum().backward()


def test_unstack_gives_each_lone_state_dict():
    actors = _actors(BOX)
    states = StackedActor(actors).unstack()
    for actor, state in zip(actors, states):
        fresh = Actor(3, BOX, hidden=(64, 64))
        fresh.load_state_dict(state)
        assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), actor.state_dict().values()))


def _stacked_critic_grads(stacked, obs, returns):
    for leaf in stacked.leaves():
        leaf.grad = None
    loss, _ = value_loss(stacked(obs), returns)
    loss.sum().backward()
    return loss, [[g.clone() for g in stacked.flat.split(leaf.grad)] for leaf in stacked.leaves()]


def test_flat_leaves_are_the_lone_parameters():
    actors = _actors(BOX)
    before = [[p.detach().clone() for p in actor.parameters()] for actor in actors]
    stacked = StackedActor(actors)
    for k, actor in enumerate(actors):
        assert all(torch.equal(p, q) for p, q in zip(actor.parameters(), before[k]))
        assert all(torch.equal(v, p) for v, p in zip(stacked.flat.split(stacked.leaves()[k]), actor.parameters()))
        with torch.no_grad():
            stacked.leaves()[k].add_(1.0)  # an optimizer step on the flat leaf moves the lone module
        assert all(torch.equal(p, q + 1.0) for p, q in zip(actor.parameters(), before[k]))


def test_adam_on_a_flat_leaf_is_adam_on_the_layers_bit_for_bit():
    torch.manual_seed(8)
    layers = [torch.nn.Parameter(torch.randn(s)) for s in [(64, 4), (64,), (2, 64), (2,), (1,)]]
    flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in layers]))
    by_layer = torch.optim.Adam(layers, lr=1e-3, eps=1e-5, foreach=True)
    by_seed = torch.optim.Adam([flat], lr=1e-3, eps=1e-5, foreach=True)
    for _ in range(20):
        grads = [torch.randn_like(p) * 10.0 ** float(torch.randint(-6, 2, ())) for p in layers]
        for p, g in zip(layers, grads):
            p.grad = g
        flat.grad = torch.cat([g.reshape(-1) for g in grads])
        by_layer.step()
        by_seed.step()
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in layers]), flat.detach())


def test_one_backward_gives_each_seed_its_own_gradient():
    torch.manual_seed(7)
    critics = [Critic(3, hidden=(64,)) for _ in range(3)]
    stacked = StackedCritic(critics)
    obs, returns = torch.randn(3, 64, 3), torch.randn(3, 64)
    loss, grads = _stacked_critic_grads(stacked, obs, returns)
    for k, critic in enumerate(critics):
        lone = Critic(3, hidden=(64,))
        lone.load_state_dict(critic.state_dict())
        lone_loss, _ = value_loss(lone(obs[k]), returns[k])
        lone_loss.backward()
        assert lone_loss == loss[k]
        for g, q in zip(grads[k], lone.parameters()):
            torch.testing.assert_close(g, q.grad, rtol=1e-5, atol=1e-8)
    # another seed's data changes nothing of seed 0's gradient, bit for bit
    other = returns.clone()
    other[1:] += 100.0
    _, moved = _stacked_critic_grads(stacked, obs, other)
    assert all(torch.equal(a, b) for a, b in zip(grads[0], moved[0]))
    assert not torch.equal(grads[1][0], moved[1][0])


def test_losses_on_k_rows_are_the_lone_losses():
    torch.manual_seed(2)
    lp, old, adv, ent, v, ret = (torch.randn(4, 50) for _ in range(6))
    loss, info = ppo_clip_loss(lp, old, adv, ent, 0.2, 0.01)
    pg, _ = policy_gradient_loss(lp, adv, ent, 0.01)
    vl, _ = value_loss(v, ret, old, 0.3)
    full = torch.ones(4, 50, dtype=torch.bool)
    for k in range(4):
        lone, lone_info = ppo_clip_loss(lp[k], old[k], adv[k], ent[k], 0.2, 0.01)
        assert loss[k] == lone and info["clip_fraction"][k] == lone_info["clip_fraction"]
        assert pg[k] == policy_gradient_loss(lp[k], adv[k], ent[k], 0.01)[0]
        assert vl[k] == value_loss(v[k], ret[k], old[k], 0.3)[0]
        assert torch.equal(normalize(adv)[k], normalize(adv[k]))
    assert torch.equal(masked_mean(lp, full), lp.mean(-1))  # a full mask is the plain mean, bit for bit
    assert torch.equal(normalize(adv, mask=full), normalize(adv))


def test_masked_losses_count_only_the_real_rows():
    torch.manual_seed(3)
    lp, adv, ent = (torch.randn(3, 40) for _ in range(3))
    sizes = [40, 23, 1]
    mask = torch.arange(40) < torch.tensor(sizes).unsqueeze(1)
    loss, _ = policy_gradient_loss(lp, adv, ent, 0.1, mask=mask)
    normalized = normalize(adv, mask=mask)
    for k, n in enumerate(sizes):
        lone, _ = policy_gradient_loss(lp[k, :n], adv[k, :n], ent[k, :n], 0.1)
        torch.testing.assert_close(loss[k], lone, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(normalized[k, :n], normalize(adv[k, :n]), rtol=1e-5, atol=1e-6)


def test_per_seed_clipping_matches_torch_per_seed():
    torch.manual_seed(4)
    shapes = [(16, 3), (16,), (1, 16), (1,)]
    grads = [[torch.randn(s) * scale for s in shapes] for scale in (0.01, 1.0, 30.0)]
    expected = []
    for seed_grads in grads:
        params = [torch.nn.Parameter(torch.zeros_like(g)) for g in seed_grads]
        for p, g in zip(params, seed_grads):
            p.grad = g.clone()
        norm = torch.nn.utils.clip_grad_norm_(params, 0.5)
        expected.append((norm, [p.grad for p in params]))
    norms = clip_grad_norms_per_seed(grads, 0.5)
    for k, (norm, clipped) in enumerate(expected):
        torch.testing.assert_close(norms[k], norm, rtol=1e-6, atol=0)
        for g, c in zip(grads[k], clipped):
            torch.testing.assert_close(g, c, rtol=1e-6, atol=0)


def test_per_seed_clipping_is_rlopts_lone_clipping_bit_for_bit():
    torch.manual_seed(5)
    shapes = [(16, 3), (16,), (2, 16), (2,)]
    grads = [[torch.randn(s) for s in shapes] for _ in range(3)]
    lone = [[g.clone() for g in seed] for seed in grads]
    norms = clip_grad_norms_per_seed(grads, 0.7)
    for k, seed in enumerate(lone):
        params = [torch.nn.Parameter(torch.zeros_like(g)) for g in seed]
        for p, g in zip(params, seed):
            p.grad = g
        assert torch.equal(clip_gradients(params, max_norm=0.7, measure_after=False).norm_before, norms[k])
        assert all(torch.equal(p.grad, g) for p, g in zip(params, grads[k]))


def test_flat_clipping_is_the_per_tensor_clipping_bit_for_bit():
    torch.manual_seed(9)
    critics = [Critic(3, hidden=(64,)) for _ in range(3)]
    stacked = StackedCritic(critics)
    flat_grads = [torch.zeros_like(leaf) for leaf in stacked.leaves()]
    for k, g in enumerate(flat_grads):
        for view in stacked.flat.split(g):
            view.copy_(torch.randn_like(view) * (k + 1))
    per_tensor = [[v.clone() for v in stacked.flat.split(g)] for g in flat_grads]
    norms = clip_flat_grad_norms_per_seed(flat_grads, stacked.flat.segments, 0.5)
    assert torch.equal(norms, clip_grad_norms_per_seed(per_tensor, 0.5))
    for g, expected in zip(flat_grads, per_tensor):
        assert all(torch.equal(v, e) for v, e in zip(stacked.flat.split(g), expected))


@pytest.mark.parametrize("kind", ["categorical", "gaussian"])
def test_sample_per_seed_draws_each_seeds_lone_numbers(kind):
    torch.manual_seed(6)
    if kind == "categorical":
        dist = Categorical(torch.randn(3, 8, 4))
    else:
        dist = DiagGaussian(torch.randn(3, 8, 2), torch.randn(3, 1, 2))
    generators, expected = [], []
    for k, seed in enumerate((11, 12, 13)):
        torch.manual_seed(seed)
        generators.append(generator_from_global_state())
        lone = Categorical._from_log_probs(dist.log_probs[k]) if kind == "categorical" else DiagGaussian(dist.mean[k], dist.log_std[k, 0])
        expected.append(torch.stack([lone.sample() for _ in range(3)]))  # the global RNG, as a lone run
    drawn = torch.stack([sample_per_seed(dist, generators) for _ in range(3)], dim=1)
    for k in range(3):
        assert torch.equal(drawn[k], expected[k])


def test_minibatch_plan_is_each_seeds_lone_permutation():
    sizes, rows, width = [250, 256, 100], 256, 64
    generators = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
    plan = plan_minibatches(sizes, rows, width, generators, [True, True, False])
    for k, size in enumerate(sizes[:2]):
        lone = list(minibatches(size, width, torch.Generator().manual_seed(k)))
        assert len(lone) == sum(1 for c in plan.counts if c[k] > 0)
        for j, chunk in enumerate(lone):
            assert plan.counts[j][k] == len(chunk)
            assert torch.equal(plan.positions[j][k, : len(chunk)], chunk)
            assert plan.masks[j][k].sum() == len(chunk)
    assert all(c[2] == 0 for c in plan.counts)  # an inactive seed draws nothing and has no rows
    assert torch.equal(generators[2].get_state(), torch.Generator().manual_seed(2).get_state())
    values = torch.arange(3 * 256.0).reshape(3, 256)
    assert torch.equal(take_rows(values, plan.positions[0])[1], values[1, plan.positions[0][1]])


def test_seed_snapshot_restores_one_seed_only():
    params = [[torch.nn.Parameter(torch.randn(4))] for _ in range(2)]
    optimizer = torch.optim.Adam([p for seed in params for p in seed], lr=0.1)
    for seed in params:
        seed[0].grad = torch.ones(4)
    optimizer.step()
    snapshots = SeedSnapshots(params, [optimizer])
    snapshots.take()
    before = [seed[0].detach().clone() for seed in params]
    state_before = optimizer.state[params[1][0]]["exp_avg"].clone()
    optimizer.step()
    snapshots.restore(1)
    assert torch.equal(params[1][0], before[1]) and not torch.equal(params[0][0], before[0])
    assert torch.equal(optimizer.state[params[1][0]]["exp_avg"], state_before)
    assert int(optimizer.state[params[1][0]]["step"]) == 1 and int(optimizer.state[params[0][0]]["step"]) == 2
