"""The :class:`Metric` interface and :class:`MetricInputs`, the policy as a function for the metrics
that differentiate its outputs or its per-sample terms.

A metric is a factory of matrix-vector products v ↦ M(θ) v over the flat parameter vector
(:mod:`~rlopt.trust_region.flat` order); CG never sees M itself (docs/theory.md#conjugate-gradient).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

MatrixVectorProduct = Callable[[Tensor], Tensor]
RowFunction = Callable[..., Tensor]
"""``(outputs [B, k], *targets) ↦ [B]``: one value per batch row, row i reading only row i."""


class Row(NamedTuple):
    """One per-sample term of a metric M = E_i[Σ_j ∇_θ r_j(y_i) ∇_θ r_j(y_i)ᵀ]:
    ``function(outputs [N, k], *targets) ↦ [N]``."""

    function: RowFunction
    """The row function (row i reads only row i)."""
    targets: tuple[Tensor, ...]
    """Its per-row data (actions, old log-probs, advantages, ...)."""


@dataclass(frozen=True)
class MetricInputs:
    """The policy on the batch as pure functions of its parameters (for ``torch.func``).

    ``forward(params, inputs)`` must equal the closure's policy outputs, and
    ``sample_loss(forward(params, inputs), *targets).mean()`` the closure's loss.
    """

    params: Mapping[str, Tensor]
    """The optimizer's parameters by name, in the optimizer's (flat-vector) order."""
    forward: Callable[[Mapping[str, Tensor], Tensor], Tensor]
    """(parameters by name, inputs [B, ...]) ↦ policy outputs y [B, k]: logits, or mean and log-std."""
    inputs: Tensor
    """The batch's observations [B, ...]."""
    targets: tuple[Tensor, ...]
    """Per-row data [B, ...] the row functions read (actions, old log-probs, advantages, ...)."""
    sample_loss: RowFunction
    """Per-sample surrogate loss l_i(y_i) (its batch mean is the loss being minimised)."""
    sample_log_prob: RowFunction
    """Per-sample log π(a_i|s_i) of the batch's actions."""
    module: nn.Module | None = None
    """The module ``forward`` calls (``module(inputs)`` = outputs at the current θ), whose ``nn.Linear``
    layers the ``kfac`` solver finds by walking it; None where no solver needs it."""
    sample_actions: Callable[[Tensor], Tensor] | None = None
    """Outputs y [B, k] ↦ actions a ~ π(·|y), one per row (the ``fisher`` statistics of the
    ``kfac``/``diagonal`` solvers); None where no solver needs it."""

    @property
    def batch_size(self) -> int:
        """N, the number of rows the expectations E_s[·] average over."""
        return int(self.inputs.shape[0])

    def primals(self, params: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Detached copies of ``params``; raises unless ``self.params`` holds exactly those tensors."""
        named = list(self.params.values())
        if len(named) != len(params) or any(a is not b for a, b in zip(named, params)):
            raise ValueError("MetricInputs.params must be the optimizer's parameters, in the same order")
        return tuple(p.detach() for p in params)

    def outputs_of(self, *tensors: Tensor) -> Tensor:
        """Policy outputs y [B, k] with the parameters replaced by ``tensors`` (same order)."""
        return self.forward(dict(zip(self.params, tensors)), self.inputs)

    def loss_of_outputs(self, outputs: Tensor) -> Tensor:
        """L(y) = mean_i l_i(y_i), the surrogate as a function of the outputs."""
        return self.sample_loss(outputs, *self.targets).mean()


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Split a flat n-vector into views shaped like ``like`` (the inverse of flattening)."""
    pieces, offset = [], 0
    for tensor in like:
        pieces.append(vector[offset : offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()
    return tuple(pieces)


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate tensors into one flat vector (row-major, in order)."""
    return torch.cat([t.reshape(-1) for t in tensors])


class Metric(ABC):
    """M(θ) of the trust region δθᵀ M δθ ≤ ε² (docs/theory.md#metrics), exposed as a matrix-vector product.

    ``mvp(params, loss, kl, inputs)`` is called once per optimizer step with graph tensors at the
    current θ and returns v ↦ M(θ) v (undamped, n-vectors over the flat ``params``). Expensive
    set-up (a first backward with ``create_graph=True``, per-sample gradients, a linearisation)
    belongs in ``mvp`` itself, so CG's repeated products reuse it. Metrics that differentiate the
    policy's outputs or per-sample terms read ``inputs``; the others ignore it.
    """

    name: ClassVar[str]
    statistics_solvers: ClassVar[tuple[str, ...]] = ()
    """The solvers besides ``cg`` that can build this M from its :meth:`rows` (:mod:`..solvers`
    derives its solver × metric table from these declarations)."""

    @abstractmethod
    def mvp(
        self, params: Sequence[Tensor], loss: Tensor, kl: Tensor, inputs: MetricInputs | None = None
    ) -> MatrixVectorProduct:
        """Return v ↦ M(θ) v (without damping); ``loss`` and ``kl`` are graph tensors at θ."""

    def _require_inputs(self, inputs: MetricInputs | None) -> MetricInputs:
        if inputs is None:
            raise ValueError(
                f"metric {self.name!r} needs MetricInputs: pass TrustRegion.step(closure, inputs=...)"
            )
        return inputs

    def rows(self, outputs: Tensor, inputs: MetricInputs | None = None) -> list[Row]:
        """The per-sample terms r_j with M = E_i[Σ_j ∇r_j ∇r_jᵀ] at the outputs y(θ) [N, k] (read for
        sampling and k), for the statistics solvers; a metric that is no such sum has none."""
        raise ValueError(f"metric {self.name!r} has no per-sample rows")
