"""K seeds' actors and critics evaluated as one network on ``[K, B, obs_dim]`` (issue 17).

Each seed keeps its own lone :class:`~rlopt.networks.Actor` / :class:`~rlopt.networks.Critic`,
built from its own seed exactly as its lone run builds it. The stacked module moves each seed's
parameters into ONE flat leaf of that seed (:class:`FlatSeeds`; the lone module's parameters
become views of it, so the lone module still predicts, loads and saves as before), and its
forward stacks the K flat leaves once (``[K, P]``) and runs each layer as a batched matmul
(``torch.baddbmm``) on views of that stack (without ``exact``, a tanh MLP as one autograd node:
:mod:`rlopt.stacked.tanh_mlp`). Consequences, by construction:

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
from typing import Any

import torch
from torch import Tensor, nn

from rlopt.distributions import ActionDistribution, Categorical, DiagGaussian
from rlopt.networks import Actor, Critic
from rlopt.stacked.tanh_mlp import TanhMLPLayout, _tanh_layer, _TanhMLP, fast_tanh

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


class Layers:
    """The K MLPs laid out as a lone ``body`` (``nn.Sequential``) on a ``[K, P]`` stack of flat
    leaves: per linear layer the ``[K, ...]`` weight and bias views of the stack, made once per
    stack (:meth:`bind`) so a rollout that acts with fixed weights does not rebuild them per step."""

    def __init__(self, flat: FlatSeeds, body: nn.Sequential, exact: bool, one_node_backward: bool = True) -> None:
        self.exact = exact
        self.steps: list[tuple[str, Any]] = []
        for layer in body:
            if isinstance(layer, nn.Linear):
                self.steps.append(("linear", (flat.index[id(layer.weight)], flat.index[id(layer.bias)])))
            elif isinstance(layer, nn.Tanh) and not exact:
                self.steps.append(("activation", fast_tanh))
            else:  # an elementwise activation, the same module for every seed
                self.steps.append(("activation", layer.forward))
        self.flat = flat
        self.sizes: list[int] = []
        """Widths of the pieces ``[K, P]`` splits into: each parameter and each run of padding."""
        self.piece: list[int] = []
        """The piece of each parameter (in ``FlatSeeds`` order)."""
        position = 0
        for start, end in flat.segments:
            if start > position:
                self.sizes.append(start - position)
            self.piece.append(len(self.sizes))
            self.sizes.append(end - start)
            position = end
        if flat.numel > position:
            self.sizes.append(flat.numel - position)
        kinds = [kind for kind, _ in self.steps]
        alternating = kinds[::2] == ["linear"] * (len(kinds) // 2 + 1) and all(
            item is fast_tanh for kind, item in self.steps[1::2])  # fmt: skip
        self.tanh_mlp = None if exact or not one_node_backward or not alternating else TanhMLPLayout(
            flat.segments, flat.shapes, [item for kind, item in self.steps if kind == "linear"], self.sizes,
            self.piece)  # fmt: skip
        """Without ``exact`` and with ``one_node_backward`` (first-order use only: no double backward), a
        tanh MLP's layout for :class:`_TanhMLP`."""

    def bind(self, stacked: Tensor) -> BoundLayers:
        """The layers with the weights of ``stacked`` (``[K, P]``, :meth:`FlatSeeds.stack`), cut by
        one ``split`` (its backward is one concatenation, not a zero-filled ``[K, P]`` per slice)."""
        if self.tanh_mlp is not None and stacked.requires_grad and torch.is_grad_enabled():
            return BoundLayers(stacked, [], self.exact, self.tanh_mlp)
        flat, k = self.flat, stacked.shape[0]
        pieces = stacked.split(self.sizes, dim=1)
        fuse_tanh = not (stacked.requires_grad and torch.is_grad_enabled())  # _tanh_layer's out= has no autograd
        bound: list[tuple[str, Any]] = []
        for kind, item in self.steps:
            if kind != "linear":
                if fuse_tanh and item is fast_tanh and bound and bound[-1][0] == "linear":  # tanh(b + x Wᵀ), 3 passes
                    bound[-1] = ("linear_tanh", bound[-1][1])
                else:
                    bound.append((kind, item))
                continue
            out_features, in_features = flat.shapes[item[0]]
            weight = pieces[self.piece[item[0]]].view(k, out_features, in_features)
            bias = pieces[self.piece[item[1]]]
            if out_features == 1:  # (W xᵀ)ᵀ: one output column as x Wᵀ takes another kernel (stacked_mlp)
                bound.append(("column", (weight, bias.unsqueeze(-1))))
            else:
                bound.append(("linear", (weight.transpose(1, 2), bias.unsqueeze(1))))
        return BoundLayers(stacked, bound, self.exact)


class BoundLayers:
    """:class:`Layers` bound to one ``[K, P]`` stack (``stacked``): ``run(x)`` is the K MLPs."""

    def __init__(self, stacked: Tensor, steps: list[tuple[str, Any]], exact: bool,
                 tanh_mlp: TanhMLPLayout | None = None) -> None:  # fmt: skip
        self.stacked, self.steps, self.exact, self.tanh_mlp = stacked, steps, exact, tanh_mlp

    def run(self, x: Tensor) -> Tensor:
        """``x`` ``[K, B, in]`` → ``[K, B, out]``: :func:`stacked_mlp`."""
        if self.tanh_mlp is not None:  # differentiable, not exact: one node (_TanhMLP)
            return _TanhMLP.apply(self.stacked, x, self.tanh_mlp)
        for kind, item in self.steps:
            if kind == "activation":
                x = item(x)
            elif kind == "linear":
                x = torch.baddbmm(item[1], x, item[0])
            elif kind == "linear_tanh":
                x = _tanh_layer(item[1], x, item[0])
            elif self.exact and x.shape[1] < _SMALL_BATCH:  # a lone nn.Linear's matrix-vector kernel
                weight, bias = item
                x = torch.stack([torch.addmv(b[0], rows, w[0]) for b, rows, w in zip(bias, x, weight)]).unsqueeze(-1)
            else:  # one output column: (W xᵀ)ᵀ rounds as a lone nn.Linear
                x = torch.baddbmm(item[1], item[0], x.transpose(1, 2)).transpose(1, 2)
        return x


def stacked_mlp(flat: FlatSeeds, body: nn.Sequential, x: Tensor, stacked: Tensor, exact: bool = True) -> Tensor:
    """The K MLPs laid out as ``body`` (module 0's) with the seeds' ``stacked`` ``[K, P]`` parameters
    on ``x`` ``[K, B, in]`` → ``[K, B, out]``. Per linear layer ``x W_kᵀ + b_k`` as one ``baddbmm``;
    a single output as ``(W_k xᵀ)ᵀ`` (``x W_kᵀ`` with one column takes another kernel than a lone
    ``nn.Linear`` and rounds differently), or per seed on a few rows when ``exact``. Activations run
    on the stacked tensor (tanh as :func:`fast_tanh` unless ``exact``). With ``exact`` every row
    equals the lone forward's at the presets' shapes; without, up to float rounding."""
    return Layers(flat, body, exact).bind(stacked).run(x)


class _Stacked(nn.Module):
    """K lone modules (kept as ``seeds``) with their parameters in :class:`FlatSeeds`; ``exact``: the
    forward is each lone module's bit for bit (else up to float rounding, faster: :func:`stacked_mlp`);
    ``one_node_backward``: without ``exact``, a tanh MLP's graph is one node (:class:`_TanhMLP`;
    false where a double backward goes through it)."""

    def __init__(self, modules: Sequence[nn.Module], exact: bool = True, one_node_backward: bool = True) -> None:
        super().__init__()
        if not modules:
            raise ValueError(f"{type(self).__name__} needs at least one module")
        self.seeds = nn.ModuleList(modules)
        self.flat = FlatSeeds(modules)
        self.exact = exact
        self.layers = Layers(self.flat, modules[0].body, exact, one_node_backward)

    @property
    def num_seeds(self) -> int:
        return len(self.seeds)

    def leaves(self) -> list[nn.Parameter]:
        """The K flat leaves, seed ``k`` at index ``k`` (what the optimizer steps)."""
        return self.flat.flat

    def stack_params(self) -> Tensor:
        """``[K, P]``: pass it to the forward to stack once while the weights do not change (a rollout)."""
        return self.flat.stack()

    def bind(self, stacked: Tensor | BoundLayers | None = None) -> BoundLayers:
        """The layers on ``stacked`` (default: the current leaves, stacked now); pass the result to
        the forward to make the layer views once while the weights do not change (a rollout)."""
        if isinstance(stacked, BoundLayers):
            return stacked
        return self.layers.bind(self.stack_params() if stacked is None else stacked)

    def unstack(self) -> list[dict[str, Tensor]]:
        """Each seed's lone ``state_dict()`` (copies), seed ``k`` at index ``k``."""
        return [{name: t.detach().clone() for name, t in module.state_dict().items()} for module in self.seeds]


class StackedActor(_Stacked):
    """K lone actors as one policy on ``[K, B, obs_dim]``; its distribution has ``[K, B]`` rows."""

    def __init__(self, actors: Sequence[Actor], exact: bool = True, one_node_backward: bool = True) -> None:
        super().__init__(actors, exact, one_node_backward)
        first = actors[0]
        self.is_discrete, self.action_shape, self.squash_mean = first.is_discrete, first.action_shape, first.squash_mean

    def head(self, obs: Tensor, stacked: Tensor | BoundLayers | None = None) -> Tensor:
        """Logits (Discrete) or the (squashed) Gaussian mean (Box), ``[K, B, head_dim]``."""
        head = self.bind(stacked).run(obs)
        if self.squash_mean:
            first = self.seeds[0]
            head = first.mean_center + first.mean_half_range * (torch.tanh(head) if self.exact else fast_tanh(head))
        return head

    def log_std(self, stacked: Tensor | BoundLayers | None = None) -> Tensor | None:
        """The seeds' state-independent log-stds as ``[K, 1, d]`` (broadcast over rows), or None."""
        if self.is_discrete:
            return None
        stacked = stacked.stacked if isinstance(stacked, BoundLayers) else stacked
        return self.flat.of(self.stack_params() if stacked is None else stacked, self.seeds[0].log_std).unsqueeze(1)

    def distribution(self, head: Tensor, log_std: Tensor | None) -> ActionDistribution:
        """The ``[K, B]`` distribution of ``head`` (and ``log_std`` for a Box)."""
        if log_std is not None:
            return DiagGaussian(head, log_std)
        return Categorical(head) if self.exact else Categorical.by_log_softmax(head)

    def forward(self, obs: Tensor, stacked: Tensor | BoundLayers | None = None) -> ActionDistribution:
        """Action distributions of ``obs`` ``[K, B, obs_dim]``: every method gives ``[K, B]``."""
        bound = self.bind(stacked)
        return self.distribution(self.head(obs, bound), self.log_std(bound))


class StackedCritic(_Stacked):
    """K lone critics as one value function: ``[K, B, obs_dim]`` → ``[K, B]``."""

    def forward(self, obs: Tensor, stacked: Tensor | BoundLayers | None = None) -> Tensor:
        """V(s) per seed and row, ``[K, B]``."""
        return self.bind(stacked).run(obs).squeeze(-1)
