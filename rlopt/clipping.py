"""Gradient clipping by global L2 norm and/or by value, reporting the norm before and after.

Numerical layer (torch and ``rlopt.errors`` only): a learner calls :func:`clip_gradients` once
per network and step, between ``backward()`` and ``optimizer.step()``. The norms stay 0-dim
tensors on the gradients' device (no ``.item()``, no host sync); the caller logs
``norm_before`` as ``grad_norm``. All work is done by ``torch.nn.utils``, which uses the fused
``torch._foreach_*`` kernels on CPU and CUDA when ``foreach=None``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import NamedTuple

import torch
from torch.nn.utils import clip_grad_value_, clip_grads_with_norm_, get_total_norm

from rlopt.errors import ConfigError

__all__ = ["GradClipResult", "clip_gradients"]

# L2 norm: the clipping rule g <- g * tau / ||g||_2 (Pascanu et al., 2013; docs/theory.md#gradient-clipping).
_NORM_TYPE = 2.0


class GradClipResult(NamedTuple):
    """Global L2 norms of the gradients before and after clipping (0-dim tensors)."""

    norm_before: torch.Tensor
    norm_after: torch.Tensor | None
    """None when ``clip_gradients(measure_after=False)`` skipped that second norm."""


def _check_threshold(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, bool)
        or math.isnan(float(value))
        or value < 0
    ):
        raise ConfigError(f"{name}: must be null or a number >= 0, got {value!r}")
    return float(value)


def _one_foreach_group(grads: list[torch.Tensor]) -> bool:
    """All gradients dense, on one CPU/CUDA device and of one dtype (torch's single foreach group)."""
    if not grads:
        return False
    first = grads[0]
    return first.device.type in ("cpu", "cuda") and all(
        g.device == first.device and g.dtype == first.dtype and not g.is_sparse for g in grads
    )


@torch.no_grad()
def _clip_norm_one_group(grads: list[torch.Tensor], max_norm: float | None) -> GradClipResult:
    """``get_total_norm`` + ``clip_grads_with_norm_`` for one foreach group, op for op as torch does
    (so bit-identical), without their per-call grouping by device and dtype, which costs more
    than the arithmetic for a small MLP."""
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, _NORM_TYPE)), _NORM_TYPE)
    if max_norm is not None:
        torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return GradClipResult(norm, None)


def clip_gradients(
    params: Iterable[torch.Tensor],
    max_norm: float | None = None,
    max_value: float | None = None,
    measure_after: bool = True,
) -> GradClipResult:
    """Clip the gradients of ``params`` in place; ``None`` disables a criterion.

    By norm: g <- g * min(1, max_norm / ||g||_2) over all gradients jointly (direction kept).
    By value: each entry is clamped to [-max_value, max_value]. With both, the norm is clipped
    first; value clipping only shrinks entries, so both bounds hold afterwards. Parameters whose
    ``grad`` is None are skipped. With no gradients both norms are 0. ``measure_after=False``
    skips the norm after clipping (a second pass over every gradient) when nobody reads it.
    """
    max_norm = _check_threshold(max_norm, "max_norm")
    max_value = _check_threshold(max_value, "max_value")
    with_grad = [p for p in params if p.grad is not None]
    grads = [p.grad for p in with_grad]

    if max_value is None and not measure_after and _one_foreach_group(grads):
        return _clip_norm_one_group(grads, max_norm)
    norm_before = get_total_norm(grads, norm_type=_NORM_TYPE, foreach=None)
    # Nothing to clip. (torch's clip_grad_value_ also raises on an empty gradient list.)
    if not grads or (max_norm is None and max_value is None):
        return GradClipResult(norm_before, norm_before)
    if max_norm is not None:
        clip_grads_with_norm_(with_grad, max_norm, norm_before, foreach=None)
    if max_value is not None:
        clip_grad_value_(with_grad, max_value, foreach=None)
    norm_after = get_total_norm(grads, norm_type=_NORM_TYPE, foreach=None) if measure_after else None
    return GradClipResult(norm_before, norm_after)
