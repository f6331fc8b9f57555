"""MLP actor and critic with orthogonal initialisation.

Orthogonal weights (Saxe et al. 2014, "Exact solutions to the nonlinear dynamics of learning in
deep linear networks") with gain √2 on hidden layers and zero biases, as in SB3 and CleanRL;
the actor's output layer uses gain 0.01 so the initial policy is near-uniform / near-zero-mean
(Andrychowicz et al. 2021, "What matters in on-policy RL").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from rlopt.distributions import ActionDistribution, Categorical, DiagGaussian
from rlopt.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}


def activation_class(name: str, key: str = "activation") -> type[nn.Module]:
    """Look up an activation by name; ``key`` names the config field in the error message."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        allowed = ", ".join(sorted(ACTIVATIONS))
        raise ConfigError(f"{key}={name!r} is not a known activation; allowed: {allowed}") from None


def orthogonal_init_(layer: nn.Linear, gain: float) -> None:
    """Orthogonal weight with the given gain (Saxe et al. 2014) and a zero bias, in place."""
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)


def mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    activation: str = "tanh",
    ortho_init: bool = True,
    hidden_gain: float = math.sqrt(2.0),
    output_gain: float = 1.0,
    key: str = "activation",
) -> nn.Sequential:
    """Linear → activation → … → Linear, with ``hidden`` widths and a linear output layer.

    ``ortho_init``: orthogonal weights with ``hidden_gain`` on hidden layers and ``output_gain`` on
    the output layer, zero biases; otherwise PyTorch's default init. ``key`` names the activation
    field in config errors (e.g. ``"actor.activation"``).
    """
    act_cls = activation_class(activation, key)
    widths = [in_dim, *hidden, out_dim]
    if any(int(w) != w or w <= 0 for w in widths):
        raise ConfigError(
            f"layer widths must be positive integers, got in={in_dim} "
            f"hidden={list(hidden)} out={out_dim}"
        )
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(widths[:-2], widths[1:-1]):
        linear = nn.Linear(fan_in, fan_out)
        if ortho_init:
            orthogonal_init_(linear, hidden_gain)
        layers += [linear, act_cls()]
    output = nn.Linear(widths[-2], out_dim)
    if ortho_init:
        orthogonal_init_(output, output_gain)
    layers.append(output)
    return nn.Sequential(*layers)


def forward_without_hooks(body: nn.Sequential, x: Tensor) -> Tensor:
    """``body(x)``, calling each layer's ``forward`` directly: the same arithmetic without the
    per-module ``__call__`` dispatch (hooks are not run). For rollout steps, where a small MLP's
    cost is mostly that dispatch; training forwards go through ``__call__`` as usual."""
    for layer in body:
        x = layer.forward(x)
    return x


class Actor(nn.Module):
    """Policy network: observation ``[B, obs_dim]`` → action distribution.

    ``Discrete(n)`` → ``Categorical`` over ``n`` logits. 1-D ``Box(d)`` → ``DiagGaussian`` whose
    mean is the MLP output and whose log-std is a state-independent learnable vector ``[d]``
    initialised to ``log_std_init`` (as in Schulman et al. 2015, TRPO). Other spaces → ``ConfigError``.

    ``squash_mean`` bounds the Gaussian mean inside the Box: μ = c + r · tanh(h) with c, r the centre
    and half-width of ``[low, high]`` (TorchRL's ``tanh_loc``). Samples stay Gaussian and are clipped
    only at the env step; without it the mean of a clipped-action policy can drift far outside the
    bounds, where every sample clips to the same action and the policy gradient is pure noise.
    """

    is_discrete: bool
    action_shape: tuple[int, ...]

    def __init__(
        self,
        obs_dim: int,
        action_space: spaces.Space,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        output_gain: float = 0.01,
        squash_mean: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(action_space, spaces.Discrete):
            if int(action_space.start) != 0:
                # Categorical samples 0..n-1; a shifted space would receive off-by-start actions.
                raise ConfigError(
                    f"Discrete action spaces must start at 0, got start={action_space.start}"
                )
            self.is_discrete = True
            self.action_shape = ()
            head_dim = int(action_space.n)
        elif isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
            self.is_discrete = False
            self.action_shape = tuple(action_space.shape)
            head_dim = int(action_space.shape[0])
        else:
            raise ConfigError(
                f"action space {action_space} is not supported; allowed: Discrete(n) or 1-D Box"
            )
        self.body = mlp(
            obs_dim,
            hidden,
            head_dim,
            activation=activation,
            ortho_init=ortho_init,
            output_gain=output_gain,
            key="actor.activation",
        )
        self.log_std: nn.Parameter | None = (
            None if self.is_discrete else nn.Parameter(torch.full((head_dim,), float(log_std_init)))
        )
        self.squash_mean = squash_mean
        if squash_mean:
            if self.is_discrete:
                raise ConfigError("actor.squash_mean applies to Box action spaces only, got Discrete")
            low, high = np.asarray(action_space.low, np.float64), np.asarray(action_space.high, np.float64)
            if not (np.isfinite(low).all() and np.isfinite(high).all()):
                raise ConfigError(f"actor.squash_mean needs finite action bounds, got low={low} high={high}")
            # Not persistent: derived from the action space, so checkpoints keep their keys.
            self.register_buffer("mean_center", torch.as_tensor((high + low) / 2, dtype=torch.float32), persistent=False)
            self.register_buffer("mean_half_range", torch.as_tensor((high - low) / 2, dtype=torch.float32), persistent=False)

    def forward(self, obs: Tensor) -> ActionDistribution:
        """Action distribution for a batch of observations (same dtype as the network)."""
        return self.distribution_of_head(self._head(obs))

    def sample(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """A rollout step: sampled actions and their log-probabilities, ``([B] or [B, d], [B])``.
        The same distribution and draws as ``self(obs).sample()``, computed without module hooks."""
        dist = self.distribution_of_head(self._head(obs, forward_without_hooks))
        actions = dist.sample()
        return actions, dist.log_prob(actions)

    def distribution_of_head(self, head: Tensor) -> ActionDistribution:
        """The action distribution of the head's output (logits, or the Gaussian mean)."""
        if self.log_std is None:
            return Categorical(head)
        return DiagGaussian(head, self.log_std)

    def _head(self, obs: Tensor, run: Callable[[nn.Sequential, Tensor], Tensor] = nn.Sequential.__call__) -> Tensor:
        """The logits (Discrete) or the (squashed) mean (Box), ``[B, head_dim]``."""
        head = run(self.body, obs)
        if self.squash_mean:
            head = self.mean_center + self.mean_half_range * torch.tanh(head)
        return head

    def outputs(self, obs: Tensor) -> Tensor:
        """The policy's outputs y per row, ``[B, k]``: the logits (Discrete, k = n), or the mean
        and the log-std side by side (Box, k = 2d; a state-independent log-std repeated per row).
        ``self.distribution(self.outputs(obs))`` is the same distribution as ``self(obs)``."""
        head = self._head(obs)
        if self.log_std is None:
            return head
        return torch.cat([head, self.log_std.expand_as(head)], dim=-1)

    def distribution(self, outputs: Tensor) -> ActionDistribution:
        """The action distribution of outputs ``[B, k]`` from :meth:`outputs`."""
        if self.log_std is None:
            return Categorical(outputs)
        mean, log_std = outputs.chunk(2, dim=-1)
        return DiagGaussian(mean, log_std)


class ActorOutputs(nn.Module):
    """:meth:`Actor.outputs` as a module's ``forward``, so ``torch.func.functional_call`` can run it
    with substituted parameters (named ``actor.<name>``, in ``actor.parameters()`` order)."""

    def __init__(self, actor: Actor) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: Tensor) -> Tensor:
        """``actor.outputs(obs)``, ``[B, k]``."""
        return self.actor.outputs(obs)


class Critic(nn.Module):
    """State-value network: observation ``[B, obs_dim]`` → V(s) ``[B]``."""

    def __init__(
        self,
        obs_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        ortho_init: bool = True,
        output_gain: float = 1.0,
    ) -> None:
        super().__init__()
        self.body = mlp(
            obs_dim,
            hidden,
            1,
            activation=activation,
            ortho_init=ortho_init,
            output_gain=output_gain,
            key="critic.activation",
        )

    def forward(self, obs: Tensor) -> Tensor:
        """V(s) for each row, ``[B]``."""
        return self.body(obs).squeeze(-1)

    def value(self, obs: Tensor) -> Tensor:
        """V(s) for a rollout step: ``forward`` without module hooks (:func:`forward_without_hooks`)."""
        return forward_without_hooks(self.body, obs).squeeze(-1)


def clip_action_to_space(
    actions: np.ndarray, space: spaces.Box, out: np.ndarray | None = None
) -> np.ndarray:
    """Clip actions into ``[space.low, space.high]`` for the env step only.

    The unclipped action is what the policy sampled and what its log-prob must be evaluated at;
    clipping is part of the environment, not the policy. ``out`` may be ``actions`` itself or a
    preallocated buffer, to avoid a per-step allocation.
    """
    return np.clip(actions, space.low, space.high, out=out)
