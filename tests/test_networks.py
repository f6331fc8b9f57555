"""Actor / Critic shapes, orthogonal initialisation, error messages and env-side action clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import nn

from rlopt.distributions import Categorical, DiagGaussian
from rlopt.errors import ConfigError
from rlopt.networks import ACTIVATIONS, Actor, ActorOutputs, Critic, clip_action_to_space, mlp

OBS_DIM = 8
BATCH = 16


def _obs(seed: int = 0) -> torch.Tensor:
    return torch.randn(BATCH, OBS_DIM, generator=torch.Generator().manual_seed(seed))


def test_discrete_actor_shapes() -> None:
    actor = Actor(OBS_DIM, spaces.Discrete(5))
    dist = actor(_obs())
    assert isinstance(dist, Categorical) and actor.is_discrete and actor.action_shape == ()
    assert dist.log_probs.shape == (BATCH, 5)
    actions = dist.sample()
    assert actions.shape == (BATCH,) and dist.log_prob(actions).shape == (BATCH,)
    assert dist.entropy().shape == (BATCH,)
    assert actor.log_std is None


def test_box_actor_shapes_and_learnable_state_independent_log_std() -> None:
    actor = Actor(OBS_DIM, spaces.Box(-1.0, 1.0, shape=(3,)), log_std_init=-0.5)
    dist = actor(_obs())
    assert isinstance(dist, DiagGaussian) and not actor.is_discrete and actor.action_shape == (3,)
    assert dist.mean.shape == (BATCH, 3) and dist.log_std.shape == (3,)
    torch.testing.assert_close(dist.std, torch.full((3,), math.exp(-0.5)))
    actions = dist.sample()
    assert actions.shape == (BATCH, 3)
    dist.log_prob(actions).sum().backward()
    assert actor.log_std is not None and actor.log_std.grad is not None
    assert any(p is actor.log_std for p in actor.parameters())


def test_squash_mean_maps_the_head_through_tanh_into_asymmetric_bounds() -> None:
    space = spaces.Box(low=np.array([-2.0, 0.0], dtype=np.float32), high=np.array([2.0, 5.0], dtype=np.float32))
    actor = Actor(OBS_DIM, space, output_gain=100.0, squash_mean=True)
    obs = _obs() * 10
    head = actor.body(obs)
    center, half = torch.tensor([0.0, 2.5]), torch.tensor([2.0, 2.5])
    mean = actor(obs).mean
    torch.testing.assert_close(mean, center + half * torch.tanh(head))
    assert (mean >= torch.from_numpy(space.low)).all() and (mean <= torch.from_numpy(space.high)).all()
    assert (head.abs() > 3).any()  # the loud head really leaves the bounds before squashing
    # Buffers are derived from the space: the state dict (checkpoints) is unchanged.
    assert set(actor.state_dict()) == set(Actor(OBS_DIM, space).state_dict())


def test_squash_mean_rejects_discrete_and_unbounded_spaces_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"actor\.squash_mean.*Discrete"):
        Actor(OBS_DIM, spaces.Discrete(3), squash_mean=True)
    with pytest.raises(ConfigError, match=r"actor\.squash_mean.*finite"):
        Actor(OBS_DIM, spaces.Box(-np.inf, np.inf, shape=(2,)), squash_mean=True)


def test_critic_outputs_one_value_per_row() -> None:
    assert Critic(OBS_DIM)(_obs()).shape == (BATCH,)


@pytest.mark.parametrize("hidden_gain,output_gain", [(math.sqrt(2), 1.0), (1.0, 0.01)])
def test_orthogonal_init_gives_scaled_orthogonal_weights_and_zero_biases(
    hidden_gain: float, output_gain: float
) -> None:
    # widths chosen so that layers are wide (out < in), tall (out > in) and square
    net = mlp(5, (64, 64, 32), 3, hidden_gain=hidden_gain, output_gain=output_gain)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    gains = [hidden_gain] * (len(linears) - 1) + [output_gain]
    for layer, gain in zip(linears, gains):
        weight = layer.weight.detach().double()
        fan_out, fan_in = weight.shape
        # W is [out, in]: orthonormal rows if out ≤ in, orthonormal columns otherwise.
        gram = weight @ weight.T if fan_out <= fan_in else weight.T @ weight
        torch.testing.assert_close(gram, gain**2 * torch.eye(min(fan_out, fan_in), dtype=torch.float64),
                                   rtol=0, atol=1e-5 * gain**2)
        assert torch.count_nonzero(layer.bias) == 0


def test_default_init_is_used_without_ortho_init() -> None:
    net = mlp(5, (64,), 3, ortho_init=False)
    first = net[0]
    assert isinstance(first, nn.Linear) and torch.count_nonzero(first.bias) > 0
    gram = first.weight.detach().T @ first.weight.detach()  # [64, 5] is tall: columns
    assert not torch.allclose(gram, 2.0 * torch.eye(5), atol=0.1)


def test_mlp_places_requested_activation_between_layers() -> None:
    for name, cls in ACTIVATIONS.items():
        net = mlp(4, (16, 16), 2, activation=name)
        assert [type(m) for m in net] == [nn.Linear, cls, nn.Linear, cls, nn.Linear]
    assert [type(m) for m in mlp(4, (), 2)] == [nn.Linear]  # linear policy


def test_small_output_gain_gives_near_uniform_initial_policy() -> None:
    num_actions = 5
    obs = 3.0 * _obs(1)
    dist = Actor(OBS_DIM, spaces.Discrete(num_actions))(obs)
    # ‖logits‖ ≤ 0.01·‖tanh features‖ ≤ 0.01·√64, so probabilities stay within e^{±0.16} of 1/n.
    assert (dist.probs - 1 / num_actions).abs().max() < 0.04
    uniform_entropy = torch.full((BATCH,), math.log(num_actions))
    torch.testing.assert_close(dist.entropy(), uniform_entropy, rtol=0, atol=1e-2)
    # with gain 1 the policy is visibly non-uniform, so the bound above is discriminating
    torch.manual_seed(0)
    loud = Actor(OBS_DIM, spaces.Discrete(num_actions), output_gain=1.0)(obs)
    assert (loud.probs - 1 / num_actions).abs().max() > 0.1

    gauss = Actor(OBS_DIM, spaces.Box(-1.0, 1.0, shape=(2,)))(obs)
    assert gauss.mean.abs().max() < 0.01 * math.sqrt(64) + 1e-6


def test_actor_and_critic_share_no_parameters() -> None:
    actor = Actor(OBS_DIM, spaces.Box(-1.0, 1.0, shape=(2,)))
    critic = Critic(OBS_DIM)
    actor_ids = {id(p) for p in actor.parameters()}
    critic_ids = {id(p) for p in critic.parameters()}
    assert actor_ids and critic_ids and actor_ids.isdisjoint(critic_ids)


def test_unknown_activation_raises_config_error_naming_key_and_choices() -> None:
    with pytest.raises(ConfigError, match=r"actor\.activation='swish'.*leaky_relu.*tanh"):
        Actor(OBS_DIM, spaces.Discrete(2), activation="swish")
    with pytest.raises(ConfigError, match=r"critic\.activation='sigmoid'"):
        Critic(OBS_DIM, activation="sigmoid")
    with pytest.raises(ConfigError, match="widths"):
        mlp(4, (0,), 2)


@pytest.mark.parametrize(
    "space",
    [spaces.MultiDiscrete([2, 3]), spaces.Box(-1.0, 1.0, shape=(2, 2)), spaces.Discrete(3, start=1),
     spaces.MultiBinary(4)],
    ids=["multidiscrete", "box-2d", "discrete-start-1", "multibinary"],
)
def test_unsupported_action_space_raises_config_error(space: spaces.Space) -> None:
    with pytest.raises(ConfigError):
        Actor(OBS_DIM, space)


def test_clip_action_to_space_clips_per_dimension_and_writes_into_out() -> None:
    space = spaces.Box(low=np.array([-1.0, 0.0, -np.inf], dtype=np.float32),
                       high=np.array([1.0, 2.0, np.inf], dtype=np.float32))
    actions = np.array([[-3.0, 1.0, -1e6], [0.5, 5.0, 1e6]], dtype=np.float32)
    expected = np.array([[-1.0, 1.0, -1e6], [0.5, 2.0, 1e6]], dtype=np.float32)
    clipped = clip_action_to_space(actions, space)
    np.testing.assert_array_equal(clipped, expected)
    assert actions[0, 0] == -3.0  # input untouched without out=
    buffer = np.empty_like(actions)
    assert clip_action_to_space(actions, space, out=buffer) is buffer
    np.testing.assert_array_equal(buffer, expected)


@pytest.mark.parametrize(
    "space", [spaces.Discrete(3), spaces.Box(-2.0, 1.0, shape=(2,), dtype=np.float32)], ids=["discrete", "box"]
)
def test_actor_outputs_rebuild_the_same_distribution(space: spaces.Space) -> None:
    torch.manual_seed(0)
    actor = Actor(4, space, hidden=(8,), squash_mean=isinstance(space, spaces.Box))
    obs = torch.randn(5, 4)
    outputs = actor.outputs(obs)
    direct, rebuilt = actor(obs), actor.distribution(outputs)
    if isinstance(space, spaces.Discrete):
        assert outputs.shape == (5, 3)  # the logits
        torch.testing.assert_close(rebuilt.log_probs, direct.log_probs, rtol=0.0, atol=0.0)
    else:
        assert outputs.shape == (5, 4)  # mean and log-std side by side
        torch.testing.assert_close(rebuilt.mean, direct.mean, rtol=0.0, atol=0.0)
        torch.testing.assert_close(rebuilt.log_std, direct.log_std.expand(5, 2), rtol=0.0, atol=0.0)
    wrapper = ActorOutputs(actor)
    assert all(a is b for (_, a), b in zip(wrapper.named_parameters(), actor.parameters(), strict=True))
    torch.testing.assert_close(wrapper(obs), outputs, rtol=0.0, atol=0.0)
