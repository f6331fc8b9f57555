"""Each concept is declared once and the rest derived (issue 19): the trust-region and K-FAC
hyper-parameter tables give the optimizers' signatures, defaults and checks; the metrics declare
the statistics solvers they work with, so the solver × metric table is derived; K-FAC's per-layer
step is one function shared by the critic optimizer and the actor solver."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import ClassVar

import pytest
import torch
from torch import Tensor

from rlopt.config import DEFAULT_TRUST_REGION
from rlopt.errors import ConfigError
from rlopt.kfac_optimizer import KFAC, KFAC_HYPERPARAMETERS
from rlopt.optimizers import TRUST_REGION_FAMILY, options
from rlopt.trust_region import METRICS, Metric, MetricInputs, TrustRegion
from rlopt.trust_region.hyperparameters import TRUST_REGION_HYPERPARAMETERS
from rlopt.trust_region.metrics.base import Row
from rlopt.trust_region.solvers import SOLVER_METRICS, check_solver, solver_metrics
from rlopt.trust_region.solvers.kfac import (
    LinearLayer,
    kfac_precondition,
    pi_damped_inverses,
    precondition_layers,
)

DTYPE = torch.float64


def test_the_trust_region_table_gives_signature_defaults_spec_and_checks() -> None:
    parameters = inspect.signature(TrustRegion.__init__).parameters
    assert list(parameters)[2:] == list(TRUST_REGION_HYPERPARAMETERS)
    defaults = TrustRegion([torch.nn.Parameter(torch.zeros(2))]).defaults
    assert defaults == {name: option.default for name, option in TRUST_REGION_HYPERPARAMETERS.items()}
    assert DEFAULT_TRUST_REGION == {"name": "trust_region", **{k: v for k, v in defaults.items() if k != "line_search"}}
    assert options("trust_region") == tuple(TRUST_REGION_HYPERPARAMETERS) and "max_kl" in TRUST_REGION_FAMILY.scheduled
    for name, option in TRUST_REGION_HYPERPARAMETERS.items():
        assert option.doc and "\n" not in option.doc, name


def test_the_kfac_table_gives_signature_defaults_and_the_checks_at_every_step() -> None:
    layer = torch.nn.Linear(2, 1)
    assert list(inspect.signature(KFAC.__init__).parameters)[2:] == list(KFAC_HYPERPARAMETERS)
    optimizer = KFAC(layer)
    assert {k: optimizer.defaults[k] for k in KFAC_HYPERPARAMETERS} == {k: o.default for k, o in KFAC_HYPERPARAMETERS.items()}
    layer(torch.ones(3, 2)).sum().backward()
    optimizer.param_groups[0]["stat_decay"] = 1.0  # e.g. a scheduler or a loaded state
    with pytest.raises(ConfigError, match=r"^stat_decay must be in \[0, 1\)"):
        optimizer.step()


class _ToyMetric(Metric):
    name: ClassVar[str] = "toy"
    statistics_solvers: ClassVar[tuple[str, ...]] = ("diagonal",)

    def mvp(self, params: Sequence[Tensor], loss: Tensor, kl: Tensor, inputs: MetricInputs | None = None):
        return lambda vector: vector

    def rows(self, outputs: Tensor, inputs: MetricInputs | None = None) -> list[Row]:
        return []


def test_the_solver_metric_table_is_derived_from_the_metrics_declarations(monkeypatch: pytest.MonkeyPatch) -> None:
    for solver, accepted in SOLVER_METRICS.items():
        declared = [name for name, cls in METRICS.items() if solver in cls.statistics_solvers]
        assert accepted is None if solver == "cg" else list(accepted) == declared
    with pytest.raises(ValueError, match="has no per-sample rows"):
        METRICS["hessian"]().rows(torch.zeros(3, 2))  # declares no statistics solver: no rows
    with pytest.raises(ConfigError, match="does not work with metric 'toy'"):
        check_solver("diagonal", "toy")
    monkeypatch.setitem(METRICS, "toy", _ToyMetric)  # a new metric is one declaration, no table edit
    check_solver("diagonal", "toy")
    assert solver_metrics()["diagonal"][-1] == "toy" and "toy" not in solver_metrics()["kfac"]
    with pytest.raises(ConfigError, match="does not work with metric 'toy'"):
        check_solver("kfac", "toy")


def test_the_shared_per_layer_step_is_the_dense_kronecker_solve_split_into_weight_and_bias() -> None:
    generator = torch.Generator().manual_seed(5)
    layer = torch.nn.Linear(3, 2).double()
    x, g = torch.randn(8, 3, dtype=DTYPE, generator=generator), torch.randn(8, 2, dtype=DTYPE, generator=generator)
    ones = torch.ones(8, 1, dtype=DTYPE)
    a_factor, g_factor = torch.cat([x, ones], 1).T @ torch.cat([x, ones], 1) / 8, g.T @ g / 8
    grads = [torch.randn(2, 3, dtype=DTYPE, generator=generator), torch.randn(2, dtype=DTYPE, generator=generator),
             torch.randn(4, dtype=DTYPE, generator=generator)]  # fmt: skip
    state: dict = {}
    out = precondition_layers(
        [LinearLayer(layer, 0, 1)], grads, [a_factor], [g_factor], lambda index: state, 0.9, 0.01, refresh=True
    )
    a_inv, g_inv = pi_damped_inverses(a_factor, g_factor, 0.01)
    block = kfac_precondition(torch.cat([grads[0], grads[1][:, None]], 1), a_inv, g_inv)
    assert torch.equal(out[0], block[:, :3]) and torch.equal(out[1], block[:, 3]) and out[2] is None
    assert torch.equal(state["kfac_A"], a_factor) and torch.equal(state["kfac_G_inv"], g_inv)  # first statistic as is
