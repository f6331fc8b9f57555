"""Gauss-Newton metrics M = E_s[J_sᵀ H J_s], J_s the Jacobian of the policy outputs y_s at s
(logits, or mean and log-std), with ``torch.func``: v ↦ J v by ``jvp``, then Jᵀ u by ``vjp``
(the linearisation's backward is built once per step); no Jacobian is materialised.

* ``gauss_newton``: H = I (classical Gauss-Newton; Bottou, Curtis & Nocedal 2018; docs/theory.md#metrics).
* ``generalized_gauss_newton``: H = H_y, the Hessian of the surrogate loss w.r.t. the outputs,
  applied as a forward-over-reverse Hessian-vector product in output space (Schraudolph 2002).
  With the surrogate −ratio·Â this H_y is indefinite where Â < 0: CG stops at negative curvature.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import ClassVar

from torch import Tensor
from torch.func import grad, jvp, vjp

from rlopt.trust_region.metrics.base import (
    MatrixVectorProduct,
    Metric,
    MetricInputs,
    Row,
    flatten,
    unflatten,
)

OutputCurvature = Callable[[Tensor], Tensor]
"""u ↦ H u in output space, u of shape [N, k]."""


def gauss_newton_vector_product(
    inputs: MetricInputs,
    primals: tuple[Tensor, ...],
    pullback: Callable[[Tensor], tuple[Tensor, ...]],
    curvature: OutputCurvature | None,
    vector: Tensor,
) -> Tensor:
    """Jᵀ H J v with J = ∂y/∂θ at ``primals``; ``pullback`` is ``vjp``'s u ↦ Jᵀu at the same point.

    ``curvature=None`` means H = I/N (the mean over states of ‖J_s v‖²).
    """
    tangents = unflatten(vector.detach(), primals)
    _, output_tangent = jvp(inputs.outputs_of, primals, tangents)  # J v, [N, k]
    if curvature is None:
        weighted = output_tangent / inputs.batch_size
    else:
        weighted = curvature(output_tangent)
    return flatten(pullback(weighted))


def output_hessian_vector_product(inputs: MetricInputs, outputs: Tensor, tangent: Tensor) -> Tensor:
    """∇²_y L(y) · u at y = ``outputs``, L = mean_i l_i(y_i) (so the 1/N is included), by ``jvp``
    of ``grad`` (forward over reverse); u and the result are [N, k]."""
    return jvp(grad(inputs.loss_of_outputs), (outputs,), (tangent,))[1]


def output_unit(unit: int, outputs: Tensor, *_: Tensor) -> Tensor:
    """y_ik, the k-th output of each row (outputs [N, k], or [N] for a single unit such as V(s)):
    the Gauss-Newton row function."""
    return outputs.reshape(outputs.shape[0], -1)[:, unit]


def _linearise(
    inputs: MetricInputs, params: Sequence[Tensor]
) -> tuple[tuple[Tensor, ...], Tensor, Callable[[Tensor], tuple[Tensor, ...]]]:
    """Detached primals θ_old, the outputs y(θ_old) and the pullback u ↦ Jᵀu (built once per step)."""
    primals = inputs.primals(params)
    outputs, pullback = vjp(inputs.outputs_of, *primals)
    return primals, outputs.detach(), pullback


class GaussNewtonMetric(Metric):
    """M = E_s[J_sᵀ J_s], J_s = ∂y(s)/∂θ for the policy outputs y (loss-independent).

    Pierrot et al. 2018: E_x[J(x, θ)ᵀ J(x, θ)] + λI, classical Gauss-Newton.
    """

    name: ClassVar[str] = "gauss_newton"
    statistics_solvers: ClassVar[tuple[str, ...]] = ("kfac", "diagonal")

    def mvp(
        self, params: Sequence[Tensor], loss: Tensor, kl: Tensor, inputs: MetricInputs | None = None
    ) -> MatrixVectorProduct:
        inputs = self._require_inputs(inputs)
        primals, _, pullback = _linearise(inputs, params)
        return functools.partial(gauss_newton_vector_product, inputs, primals, pullback, None)

    def rows(self, outputs: Tensor, inputs: MetricInputs | None = None) -> list[Row]:
        """One r_k = y_ik per output unit k: E_s[JᵀJ] = E_s[Σ_k ∇y_k ∇y_kᵀ] (loss-independent, so
        ``inputs`` is not read: K-FAC's critic step uses these rows for V(s))."""
        units = outputs.reshape(outputs.shape[0], -1).shape[1]
        return [Row(functools.partial(output_unit, unit), ()) for unit in range(units)]


class GeneralizedGaussNewtonMetric(Metric):
    """M = E_s[J_sᵀ H_y J_s], H_y = ∇²_y l the Hessian of the per-sample loss in output space.

    Pierrot et al. 2018: E_(x,y)[J(x, θ)ᵀ H_y(h_θ(x)) J(x, θ)] + λI, generalized Gauss-Newton.
    """

    name: ClassVar[str] = "generalized_gauss_newton"

    def mvp(
        self, params: Sequence[Tensor], loss: Tensor, kl: Tensor, inputs: MetricInputs | None = None
    ) -> MatrixVectorProduct:
        inputs = self._require_inputs(inputs)
        primals, outputs, pullback = _linearise(inputs, params)
        curvature = functools.partial(output_hessian_vector_product, inputs, outputs)
        return functools.partial(gauss_newton_vector_product, inputs, primals, pullback, curvature)
