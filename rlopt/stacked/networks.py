"""K seeds' actors and critics evaluated as one network on ``[K, B, obs_dim]`` (issue 17).

Each seed keeps its own lone :class:`~rlopt.networks.Actor` / :class:`~rlopt.networks.Critic`,
built from its own seed exactly as its lone run builds it; the stacked module holds them (no copy)
and its forward stacks their parameters layer by layer (``torch.stack``, one op per tensor kind)
and runs batched matmuls (``torch.baddbmm``). Consequences, by construction:

* seed ``k``'s parameters ARE its lone modules' leaves, so ``unstack`` is each lone module's own
  ``state_dict`` (per-seed checkpoints in the lone format) and the initial weights are the lone
  run's bit for bit;
* one ``torch.optim`` optimizer over all seeds' leaves (one param group) is exactly per seed for
  every per-tensor rule (SGD, Adam, RMSprop, Adagrad, ...), including Adam's per-tensor ``step``:
  a seed that does not step this time (PPO ``target_kl``, a rolled-back update) has ``grad None``
  and torch.optim skips its tensors.

Why this layout (``scripts/bench_stacked_ops.py``, one thread, 64x64 MLP, batch 256, fwd + bwd +
Adam): ``[K, ...]`` leaves are cheapest in the optimizer (one tensor per layer for all seeds) but
share Adam's ``step`` count among seeds, so a seed that stops early or is rolled back could not keep
its own bias correction; ``torch.func`` (``stack_module_state`` + ``vmap``) has the same layout and
more dispatch; per-seed leaves cost one ``torch.stack`` per tensor kind in the forward (~5 µs) and
an optimizer step that grows with K, and are exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rlopt.distributions import ActionDistribution, Categorical, DiagGaussian
from rlopt.networks import Actor, Critic


_SMALL_BATCH = 16
"""Below this many rows, a single-output layer runs per seed (``addmv``): a lone ``nn.Linear`` with
one output takes a matrix-vector kernel for a few rows (< 7 here) that no batched product matches."""


Layer = tuple[list[nn.Parameter], list[nn.Parameter]] | nn.Module
"""A linear layer as its K seeds' (weights, biases), or the activation module shared by the seeds."""
StackedParams = list[tuple[Tensor, Tensor]]
"""Every linear layer's ``torch.stack`` ed weights ``[K, out, in]`` and biases ``[K, out]``."""


def seed_layers(bodies: Sequence[nn.Sequential]) -> list[Layer]:
    """The K MLPs ``bodies`` (same layout) layer by layer: each linear layer's K weights and biases
    (the seeds' own leaves), each activation once."""
    layers: list[Layer] = []
    for index, layer in enumerate(bodies[0]):
        if isinstance(layer, nn.Linear):
            layers.append(([body[index].weight for body in bodies], [body[index].bias for body in bodies]))
        else:
            layers.append(layer)
    return layers


def stack_params(layers: Sequence[Layer]) -> StackedParams:
    """One ``torch.stack`` per linear layer's weights and biases (differentiable in each seed's leaves)."""
    return [(torch.stack(layer[0]), torch.stack(layer[1])) for layer in layers if isinstance(layer, tuple)]


def stacked_mlp(layers: Sequence[Layer], x: Tensor, params: StackedParams | None = None) -> Tensor:
    """The K MLPs of ``layers`` on ``x`` ``[K, B, in]`` → ``[K, B, out]``, with ``params`` (default:
    stacked now). Per linear layer ``x W_kᵀ + b_k`` as one ``baddbmm``; a single output as
    ``(W_k xᵀ)ᵀ`` (``x W_kᵀ`` with one column takes another kernel than a lone ``nn.Linear`` and
    rounds differently), or per seed on a few rows. Activations run on the stacked tensor. Every
    row equals the lone forward's at the presets' shapes."""
    stacked = iter(params if params is not None else stack_params(layers))
    for layer in layers:
        if not isinstance(layer, tuple):
            x = layer.forward(x)  # elementwise activation, the same module for every seed
            continue
        weight, bias = next(stacked)
        if weight.shape[1] == 1 and x.shape[1] < _SMALL_BATCH:  # a lone nn.Linear's matrix-vector kernel
            x = torch.stack([torch.addmv(b, rows, w[0]) for b, rows, w in zip(layer[1], x, layer[0])]).unsqueeze(-1)
        elif weight.shape[1] == 1:  # one output column: (W xᵀ)ᵀ rounds as a lone nn.Linear
            x = torch.baddbmm(bias.unsqueeze(-1), weight, x.transpose(1, 2)).transpose(1, 2)
        else:
            x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
    return x


class StackedActor(nn.Module):
    """K lone actors as one policy on ``[K, B, obs_dim]``; its distribution has ``[K, B]`` rows."""

    def __init__(self, actors: Sequence[Actor]) -> None:
        super().__init__()
        if not actors:
            raise ValueError("StackedActor needs at least one actor")
        self.seeds = nn.ModuleList(actors)
        self.layers = seed_layers([actor.body for actor in actors])
        first = actors[0]
        self.is_discrete, self.action_shape, self.squash_mean = first.is_discrete, first.action_shape, first.squash_mean

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    def head(self, obs: Tensor, params: StackedParams | None = None) -> Tensor:
        """Logits (Discrete) or the (squashed) Gaussian mean (Box), ``[K, B, head_dim]``; ``params``
        (from :meth:`stack_params`) saves the stacking when the weights do not change (a rollout)."""
        head = stacked_mlp(self.layers, obs, params)
        if self.squash_mean:
            first = self.seeds[0]
            head = first.mean_center + first.mean_half_range * torch.tanh(head)
        return head

    def stack_params(self) -> StackedParams:
        """The linear layers' stacked weights and biases (see :func:`stack_params`)."""
        return stack_params(self.layers)

    def log_std(self) -> Tensor | None:
        """The seeds' state-independent log-stds as ``[K, 1, d]`` (broadcast over rows), or None."""
        if self.is_discrete:
            return None
        return torch.stack([actor.log_std for actor in self.seeds]).unsqueeze(1)

    def distribution(self, head: Tensor, log_std: Tensor | None) -> ActionDistribution:
        """The ``[K, B]`` distribution of ``head`` (and ``log_std`` for a Box)."""
        return Categorical(head) if log_std is None else DiagGaussian(head, log_std)

    def forward(self, obs: Tensor) -> ActionDistribution:
        """Action distributions of ``obs`` ``[K, B, obs_dim]``: every method gives ``[K, B]``."""
        return self.distribution(self.head(obs), self.log_std())

    def unstack(self) -> list[dict[str, Tensor]]:
        """Each seed's lone ``Actor.state_dict()`` (copies), seed ``k`` at index ``k``."""
        return [{name: t.detach().clone() for name, t in actor.state_dict().items()} for actor in self.seeds]


class StackedCritic(nn.Module):
    """K lone critics as one value function: ``[K, B, obs_dim]`` → ``[K, B]``."""

    def __init__(self, critics: Sequence[Critic]) -> None:
        super().__init__()
        if not critics:
            raise ValueError("StackedCritic needs at least one critic")
        self.seeds = nn.ModuleList(critics)
        self.layers = seed_layers([critic.body for critic in critics])

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    def stack_params(self) -> StackedParams:
        """The linear layers' stacked weights and biases (see :func:`stack_params`)."""
        return stack_params(self.layers)

    def forward(self, obs: Tensor, params: StackedParams | None = None) -> Tensor:
        """V(s) per seed and row, ``[K, B]``."""
        return stacked_mlp(self.layers, obs, params).squeeze(-1)

    def unstack(self) -> list[dict[str, Tensor]]:
        """Each seed's lone ``Critic.state_dict()`` (copies), seed ``k`` at index ``k``."""
        return [{name: t.detach().clone() for name, t in critic.state_dict().items()} for critic in self.seeds]
