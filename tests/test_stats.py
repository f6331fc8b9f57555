"""rlopt.stats against hand-computed IQMs, probabilities of improvement and bootstrap behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from rlopt.stats import (
    bootstrap_ci,
    bootstrap_ci_columns,
    iqm,
    iqm_along,
    poi_along,
    poi_ci,
    probability_of_improvement,
)


@pytest.mark.parametrize(
    "scores, expected",
    [
        (np.arange(8), 3.5),  # trims 2 from each end: mean(2, 3, 4, 5)
        ([1, 2, 3, 4, 5, 6, 7, 100], 4.5),  # the outlier is trimmed: mean(3, 4, 5, 6), while the mean is 16
        ([1, 2, 3, 4, 100], 3.0),  # int(0.25 * 5) = 1 trimmed per end: mean(2, 3, 4)
        ([10, 20, 30, 100], 25.0),  # n = 4: mean(20, 30)
        ([1, 2, 9], 4.0),  # n < 4 trims nothing: the plain mean
        ([500.0], 500.0),
    ],
)
def test_iqm_hand_values(scores: list[float], expected: float) -> None:
    assert iqm(scores) == pytest.approx(expected)


def test_iqm_of_nothing_is_nan() -> None:
    assert math.isnan(iqm([]))


def test_poi_of_separated_samples_is_one_and_zero() -> None:
    assert probability_of_improvement([3, 4, 5], [0, 1, 2]) == 1.0
    assert probability_of_improvement([0, 1, 2], [3, 4, 5]) == 0.0


def test_poi_of_identical_samples_is_half() -> None:
    assert probability_of_improvement([1, 2, 3], [1, 2, 3]) == 0.5
    assert probability_of_improvement([7, 7], [7, 7, 7]) == 0.5


def test_poi_hand_case_with_ties() -> None:
    # Pairs (x, y): x=1 loses to 2 and 3; each x=2 ties y=2 and loses to 3 -> wins 0, ties 2 of 6.
    assert probability_of_improvement([1, 2, 2], [2, 3]) == pytest.approx((0 + 0.5 * 2) / 6)
    # x = [5, 15, 25] vs y = [10, 20, 30, 100]: wins 15>10, 25>10, 25>20 -> 3 of 12.
    assert probability_of_improvement([5, 15, 25], [10, 20, 30, 100]) == pytest.approx(0.25)


def test_vectorised_poi_matches_mann_whitney() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 5, size=(7, 9)).astype(float), rng.integers(0, 5, size=(7, 6)).astype(float)
    expected = [scipy.stats.mannwhitneyu(a, b).statistic / (a.size * b.size) for a, b in zip(x, y)]
    np.testing.assert_allclose(poi_along(x, y, axis=-1), expected)


def test_ci_of_identical_scores_is_finite_and_degenerate() -> None:
    assert bootstrap_ci([500.0] * 10, reps=500, seed=0) == (500.0, 500.0)
    assert bootstrap_ci([3.0], reps=500, seed=0) == (3.0, 3.0)
    assert poi_ci([500.0] * 5, [500.0] * 5, reps=500, seed=0) == (0.5, 0.5)
    assert poi_ci([1.0, 2.0], [3.0, 4.0], reps=500, seed=0) == (0.0, 0.0)


def test_poi_ci_with_a_single_score() -> None:
    low, high = poi_ci([50.0], [10.0, 20.0, 30.0, 100.0], reps=500, seed=0)
    assert low <= probability_of_improvement([50.0], [10.0, 20.0, 30.0, 100.0]) == 0.75 <= high
    assert 0.0 <= low < high <= 1.0


def test_ci_of_empty_sample_is_nan() -> None:
    assert all(math.isnan(v) for v in bootstrap_ci([], reps=10))
    assert all(math.isnan(v) for v in poi_ci([], [1.0], reps=10))


def test_ci_contains_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(1.0, 1.0, size=12), rng.normal(0.0, 1.0, size=9)
    low, high = bootstrap_ci(x, iqm_along, reps=1000, seed=0)
    assert low < iqm(x) < high
    low, high = poi_ci(x, y, reps=1000, seed=0)
    assert low < probability_of_improvement(x, y) < high
    assert 0.0 <= low and high <= 1.0


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    x = np.random.default_rng(1).normal(size=10)
    y = np.random.default_rng(2).normal(size=8)
    assert bootstrap_ci(x, reps=1000, seed=7) == bootstrap_ci(x, reps=1000, seed=7)
    assert bootstrap_ci(x, reps=1000, seed=7) != bootstrap_ci(x, reps=1000, seed=8)
    assert poi_ci(x, y, reps=1000, seed=7) == poi_ci(x, y, reps=1000, seed=7)
    assert poi_ci(x, y, reps=1000, seed=7) != poi_ci(x, y, reps=1000, seed=8)


def test_confidence_level_widens_the_interval() -> None:
    x = np.random.default_rng(4).normal(size=15)
    narrow = bootstrap_ci(x, reps=1000, seed=0, confidence=0.5)
    wide = bootstrap_ci(x, reps=1000, seed=0, confidence=0.99)
    assert wide[0] < narrow[0] < narrow[1] < wide[1]


def test_column_cis_resample_runs_and_handle_constant_columns() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=(8, 30))
    values[:, 4] = 2.5  # every run equal at this grid point
    low, high = bootstrap_ci_columns(values, reps=500, seed=0)
    center = iqm_along(values.T)
    assert low.shape == high.shape == (30,)
    assert np.all(low <= center + 1e-12) and np.all(center <= high + 1e-12)
    assert low[4] == high[4] == 2.5
    again = bootstrap_ci_columns(values, reps=500, seed=0)
    np.testing.assert_array_equal(low, again[0])
    single = bootstrap_ci_columns(values[:1], reps=500, seed=0)
    np.testing.assert_array_equal(single[0], values[0])


def test_bad_reps_are_rejected() -> None:
    with pytest.raises(ValueError, match="reps"):
        bootstrap_ci([1.0, 2.0], reps=0)
