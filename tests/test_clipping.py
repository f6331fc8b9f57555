"""Gradient clipping: norms against hand-computed values, direction, value bounds, bad thresholds."""

from __future__ import annotations

import math

import pytest
import torch

from rlopt.clipping import GradClipResult, clip_gradients
from rlopt.errors import ConfigError


def params_with_grads(*grads: list[float] | None) -> list[torch.Tensor]:
    """float64 parameters whose .grad is set to ``grads`` (None leaves .grad None)."""
    params = []
    for grad in grads:
        size = 1 if grad is None else len(grad)
        param = torch.zeros(size, dtype=torch.float64, requires_grad=True)
        if grad is not None:
            param.grad = torch.tensor(grad, dtype=torch.float64)
        params.append(param)
    return params


def grads_of(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.grad.clone() for p in params if p.grad is not None]


# Gradients (3, 4) and (12,): ||g||_2 = sqrt(9 + 16 + 144) = 13.
GRADS = ([3.0, 4.0], [12.0])
NORM = 13.0


def test_norm_before_is_global_l2_norm_and_is_a_0_dim_tensor() -> None:
    result = clip_gradients(params_with_grads(*GRADS))
    assert isinstance(result, GradClipResult)
    assert result.norm_before.dim() == 0 and result.norm_after.dim() == 0
    assert result.norm_before.item() == pytest.approx(NORM, rel=1e-15)
    assert result.norm_after.item() == pytest.approx(NORM, rel=1e-15)


def test_clip_by_norm_scales_to_max_norm_and_keeps_direction() -> None:
    params = params_with_grads(*GRADS)
    before = torch.cat(grads_of(params))
    result = clip_gradients(params, max_norm=6.5)
    after = torch.cat(grads_of(params))
    assert result.norm_before.item() == pytest.approx(NORM, rel=1e-15)
    # torch scales by max_norm / (norm + 1e-6): the norm lands on 6.5 to ~1e-7 relative.
    assert result.norm_after.item() == pytest.approx(6.5, rel=1e-6)
    assert torch.linalg.vector_norm(after).item() == pytest.approx(result.norm_after.item())
    torch.testing.assert_close(after, before * (6.5 / NORM), rtol=1e-6, atol=0)
    cosine = torch.dot(before, after) / (before.norm() * after.norm())
    assert cosine.item() == pytest.approx(1.0, abs=1e-15)
    expected_first = torch.tensor([1.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(params[0].grad, expected_first, rtol=1e-6, atol=0)


def test_no_clipping_below_threshold_leaves_grads_bit_identical() -> None:
    params = params_with_grads(*GRADS)
    before = grads_of(params)
    result = clip_gradients(params, max_norm=13.5, max_value=12.0)
    for old, new in zip(before, grads_of(params)):
        assert torch.equal(old, new)
    assert result.norm_before.item() == result.norm_after.item() == pytest.approx(NORM)


def test_clip_by_value_bounds_every_entry() -> None:
    params = params_with_grads([-5.0, 0.5, 3.0], [-0.25])
    result = clip_gradients(params, max_value=1.0)
    assert params[0].grad.tolist() == [-1.0, 0.5, 1.0]
    assert params[1].grad.tolist() == [-0.25]
    assert result.norm_before.item() == pytest.approx(math.sqrt(25 + 0.25 + 9 + 0.0625))
    assert result.norm_after.item() == pytest.approx(math.sqrt(1 + 0.25 + 1 + 0.0625))


def test_clip_by_norm_and_value_satisfies_both_bounds() -> None:
    # Norm first: (3, 4, 12) * 6.5/13 = (1.5, 2, 6); then value 2.5: (1.5, 2, 2.5).
    params = params_with_grads(*GRADS)
    result = clip_gradients(params, max_norm=6.5, max_value=2.5)
    torch.testing.assert_close(
        torch.cat(grads_of(params)),
        torch.tensor([1.5, 2.0, 2.5], dtype=torch.float64),
        rtol=1e-6,
        atol=0,
    )
    assert result.norm_before.item() == pytest.approx(NORM)
    assert result.norm_after.item() == pytest.approx(math.sqrt(1.5**2 + 2**2 + 2.5**2), rel=1e-6)
    assert result.norm_after.item() <= 6.5


def test_params_without_grad_are_skipped() -> None:
    params = params_with_grads([3.0, 4.0], None, [12.0])
    result = clip_gradients(params, max_norm=1.0)
    assert params[1].grad is None
    assert result.norm_before.item() == pytest.approx(NORM)
    assert result.norm_after.item() == pytest.approx(1.0, rel=1e-6)


def test_no_grads_at_all_gives_zero_norms() -> None:
    result = clip_gradients(params_with_grads(None, None), max_norm=1.0, max_value=1.0)
    assert result.norm_before.item() == 0.0 and result.norm_after.item() == 0.0


def test_accepts_a_generator_of_parameters() -> None:
    layer = torch.nn.Linear(3, 2)
    layer(torch.ones(4, 3)).pow(2).sum().backward()
    expected = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in layer.parameters()]))
    result = clip_gradients(layer.parameters(), max_norm=1e-3)
    torch.testing.assert_close(result.norm_before, expected)
    assert result.norm_after.item() == pytest.approx(1e-3, rel=1e-3)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"max_norm": -1.0}, "max_norm"),
        ({"max_value": -0.1}, "max_value"),
        ({"max_norm": float("nan")}, "max_norm"),
        ({"max_norm": "1"}, "max_norm"),
        ({"max_value": True}, "max_value"),
    ],
)
def test_bad_thresholds_are_config_errors(kwargs: dict, name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name}: must be null or a number >= 0"):
        clip_gradients(params_with_grads([1.0]), **kwargs)


@pytest.mark.parametrize("max_norm", [0.5, 1e6, None])
def test_the_fast_path_without_norm_after_is_bit_identical_to_torch_utilities(max_norm: float | None) -> None:
    """``measure_after=False`` skips torch's grouping by device/dtype: same norm, same clipped gradients."""
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(shape, generator=generator) * 40 for shape in ((64, 4), (64,), (64, 64), (2, 64), (2,))]
    fast, reference = (params_with_grads(*[g.flatten().tolist() for g in grads]) for _ in range(2))
    fast_result = clip_gradients(fast, max_norm=max_norm, measure_after=False)
    reference_result = clip_gradients(reference, max_norm=max_norm)
    assert fast_result.norm_after is None
    assert torch.equal(fast_result.norm_before, reference_result.norm_before)
    assert all(torch.equal(a, b) for a, b in zip(grads_of(fast), grads_of(reference)))
    if max_norm == 0.5:
        assert torch.linalg.vector_norm(torch.cat(grads_of(fast))).item() == pytest.approx(0.5, rel=1e-5)
