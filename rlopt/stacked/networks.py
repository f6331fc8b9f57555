"""K seeds' actors and critics evaluated as one network on ``[K, B, obs_dim]`` (issue 17).

Each seed keeps its own lone :class:`~rlopt.networks.Actor` / :class:`~rlopt.networks.Critic`,
built from its own seed exactly as its lone run builds it. The stacked module moves each seed's
parameters into ONE flat leaf of that seed (:class:`FlatSeeds`; the lone module's parameters
become views of it, so the lone module still predicts, loads and saves as before), and its
forward stacks the K flat leaves once (``[K, P]``) and runs each layer as a batched matmul
(``torch.baddbmm``) on views of that stack. Consequences, by construction:

* the initial weights are the lone run's bit for bit, and ``unstack`` is each lone module's own
  ``state_dict`` (per-seed checkpoints in the lone format);
* one ``torch.optim`` optimizer over the K flat leaves (one param group) is exactly per seed for
  every elementwise rule (SGD, Adam, RMSprop, Adagrad, ...: on a flat vector the same numbers, bit
  for bit, as on the layer tensors), including Adam's per-tensor ``step``: a seed that does not
  step this time (PPO ``target_kl``, a rolled-back update) has ``grad None`` and torch.optim skips it.

Why this layout (``scripts/bench_stacked_ops.py``, one thread, 64x64 MLP, batch 256, fwd + bwd +
Adam): ``[K, ...]`` leaves per layer are cheapest in the optimizer but share Adam's ``step`` count
among seeds, so a seed that stops early or is rolled back could not keep its own bias correction;
``torch.func`` (``stack_module_state`` + ``vmap``) has the same layout and more dispatch; one leaf
per seed and layer is exact but its optimizer step costs one dispatch per tensor (6K tensors for
K two-layer MLPs: ~2 ms at K = 10 for Adam). One flat leaf per seed keeps the exactness with K
tensors in the optimizer and one ``torch.stack`` per forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rlopt.distributions import ActionDistribution, Categorical, DiagGaussian
from rlopt.networks import Actor, Critic

_ALIGN = 16
"""Floats per alignment unit of a flat leaf's segments: matmul kernels on a weight that does not
start on a 64-byte boundary can round differently from the lone layer's (seen on 1-row batches)."""
_SMALL_BATCH = 16
"""Below this many rows, a single-output layer runs per seed (``addmv``): a lone ``nn.Linear`` with
one output takes a matrix-vector kernel for a few rows (< 7 here) that no batched product matches."""


class FlatSeeds:
    """K modules of one layout, each seed's parameters in one flat leaf ``flat[k]`` ``[P]``; the
    modules' own parameters are re-pointed to views of it (same objects, shared storage)."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        if not modules:
            raise ValueError("FlatSeeds needs at least one module")
        self.params = [list(m.parameters()) for m in modules]
        self.shapes = [p.shape for p in self.params[0]]
        self.segments: list[tuple[int, int]] = []
        start = 0
        for p in self.params[0]:  # each segment starts on a 64-byte boundary (see _ALIGN)
            self.segments.append((start, start + p.numel()))
            start += -(-p.numel() // _ALIGN) * _ALIGN
        self.numel = start
        """Length of a flat leaf: the parameters, each padded to a multiple of ``_ALIGN`` (zeros that
        no forward reads, whose gradient is 0 and which an elementwise optimizer leaves at 0)."""
        self.index = {id(p): i for i, p in enumerate(self.params[0])}
        """Position of each of module 0's parameters (the same position in every module)."""
        self.flat: list[nn.Parameter] = []
        for seed_params in self.params:
            if [p.shape for p in seed_params] != self.shapes:
                raise ValueError("every seed's module needs the same parameter shapes")
            flat = nn.Parameter(torch.zeros(self.numel, dtype=seed_params[0].dtype, device=seed_params[0].device))
            for p, (start, end) in zip(seed_params, self.segments):
                flat.data[start:end] = p.detach().reshape(-1)
                p.data = flat.data[start:end].view(p.shape)
            self.flat.append(flat)

    @property
    def num_seeds(self) -> int:
        return len(self.flat)

    def stack(self) -> Tensor:
        """The seeds' flat leaves as one ``[K, P]`` tensor (differentiable in each leaf)."""
        return torch.stack(self.flat)

    def of(self, stacked: Tensor, param: nn.Parameter) -> Tensor:
        """The ``[K, *shape]`` view of module 0's ``param`` in ``stacked`` (from :meth:`stack`)."""
        i = self.index[id(param)]
        start, end = self.segments[i]
        return stacked[:, start:end].view(stacked.shape[0], *self.shapes[i])

    def split(self, flat: Tensor) -> list[Tensor]:
        """One seed's ``[P]`` tensor (a gradient, an optimizer moment) as views shaped like its
        parameters, in ``module.parameters()`` order."""
        return [flat[start:end].view(shape) for (start, end), shape in zip(self.segments, self.shapes)]


def stacked_mlp(flat: FlatSeeds, body: nn.Sequential, x: Tensor, stacked: Tensor) -> Tensor:
    """The K MLPs laid out as ``body`` (module 0's) with the seeds' ``stacked`` ``[K, P]`` parameters
    on ``x`` ``[K, B, in]`` → ``[K, B, out]``. Per linear layer ``x W_kᵀ + b_k`` as one ``baddbmm``;
    a single output as ``(W_k xᵀ)ᵀ`` (``x W_kᵀ`` with one column takes another kernel than a lone
    ``nn.Linear`` and rounds differently), or per seed on a few rows. Activations run on the
    stacked tensor. Every row equals the lone forward's at the presets' shapes."""
    for layer in body:
        if not isinstance(layer, nn.Linear):
            x = layer.forward(x)  # elementwise activation, the same module for every seed
            continue
        weight, bias = flat.of(stacked, layer.weight), flat.of(stacked, layer.bias)
        if weight.shape[1] == 1 and x.shape[1] < _SMALL_BATCH:  # a lone nn.Linear's matrix-vector kernel
            x = torch.stack([torch.addmv(b, rows, w[0]) for b, rows, w in zip(bias, x, weight)]).unsqueeze(-1)
        elif weight.shape[1] == 1:  # one output column: (W xᵀ)ᵀ rounds as a lone nn.Linear
            x = torch.baddbmm(bias.unsqueeze(-1), weight, x.transpose(1, 2)).transpose(1, 2)
        else:
            x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
    return x


class _Stacked(nn.Module):
    """K lone modules (kept as ``seeds``) with their parameters in :class:`FlatSeeds`."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        super().__init__()
        if not modules:
            raise ValueError(f"{type(self).__name__} needs at least one module")
        self.seeds = nn.ModuleList(modules)
        self.flat = FlatSeeds(modules)

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    def leaves(self) -> list[nn.Parameter]:
        """The K flat leaves, seed ``k`` at index ``k`` (what the optimizer steps)."""
        return self.flat.flat

    def stack_params(self) -> Tensor:
        """``[K, P]``: pass it to the forward to stack once while the weights do not change (a rollout)."""
        return self.flat.stack()

    def unstack(self) -> list[dict[str, Tensor]]:
        """Each seed's lone ``state_dict()`` (copies), seed ``k`` at index ``k``."""
        return [{name: t.detach().clone() for name, t in module.state_dict().items()} for module in self.seeds]


class StackedActor(_Stacked):
    """K lone actors as one policy on ``[K, B, obs_dim]``; its distribution has ``[K, B]`` rows."""

    def __init__(self, actors: Sequence[Actor]) -> None:
        super().__init__(actors)
        first = actors[0]
        self.is_discrete, self.action_shape, self.squash_mean = first.is_discrete, first.action_shape, first.squash_mean

    def head(self, obs: Tensor, stacked: Tensor | None = None) -> Tensor:
        """Logits (Discrete) or the (squashed) Gaussian mean (Box), ``[K, B, head_dim]``."""
        first = self.seeds[0]
        head = stacked_mlp(self.flat, first.body, obs, self.stack_params() if stacked is None else stacked)
        if self.squash_mean:
            head = first.mean_center + first.mean_half_range * torch.tanh(head)
        return head

    def log_std(self, stacked: Tensor | None = None) -> Tensor | None:
        """The seeds' state-independent log-stds as ``[K, 1, d]`` (broadcast over rows), or None."""
        if self.is_discrete:
            return None
        return self.flat.of(self.stack_params() if stacked is None else stacked, self.seeds[0].log_std).unsqueeze(1)

    def distribution(self, head: Tensor, log_std: Tensor | None) -> ActionDistribution:
        """The ``[K, B]`` distribution of ``head`` (and ``log_std`` for a Box)."""
        return Categorical(head) if log_std is None else DiagGaussian(head, log_std)

    def forward(self, obs: Tensor, stacked: Tensor | None = None) -> ActionDistribution:
        """Action distributions of ``obs`` ``[K, B, obs_dim]``: every method gives ``[K, B]``."""
        stacked = self.stack_params() if stacked is None else stacked
        return self.distribution(self.head(obs, stacked), self.log_std(stacked))


class StackedCritic(_Stacked):
    """K lone critics as one value function: ``[K, B, obs_dim]`` → ``[K, B]``."""

    def forward(self, obs: Tensor, stacked: Tensor | None = None) -> Tensor:
        """V(s) per seed and row, ``[K, B]``."""
        stacked = self.stack_params() if stacked is None else stacked
        return stacked_mlp(self.flat, self.seeds[0].body, obs, stacked).squeeze(-1)
