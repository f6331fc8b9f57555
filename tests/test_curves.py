"""rlopt.curves: every point of a tag, TensorBoard's resume/purge semantics, and the common grid."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from rlopt.curves import Curve, common_grid, event_files, read_scalar
from rlopt.run_files import wait_for_later_event_file_name

TAG = "rollout/episode_return"


def _write(run_dir: Path, points: list[tuple[int, float]], purge_step: int | None = None, other: bool = False,
           new_style: bool = False) -> None:
    if purge_step is not None:
        wait_for_later_event_file_name(run_dir)  # the resumed file must sort last, as in the trainer
    writer = SummaryWriter(str(run_dir), purge_step=purge_step, max_queue=100_000)
    for step, value in points:
        writer.add_scalar(TAG, value, step, new_style=new_style)
        if other:
            writer.add_scalar(TAG + "_std", -value, step)  # a tag that contains TAG as a prefix
    writer.close()


def _tensorboard_view(run_dir: Path) -> Curve:
    """What TensorBoard itself shows (all points, purges applied), last write kept per step."""
    acc = EventAccumulator(str(run_dir), size_guidance={SCALARS: 0})
    acc.Reload()
    last = {e.step: e.value for e in acc.Scalars(TAG)}
    steps = np.array(sorted(last), dtype=np.int64)
    return Curve(steps, np.array([last[s] for s in steps], dtype=np.float64))


def test_reads_every_point_beyond_the_10k_reservoir(tmp_path: Path) -> None:
    points = [(8 * i, float(np.sin(i))) for i in range(12_000)]
    _write(tmp_path, points, other=True)
    curve = read_scalar(tmp_path, TAG)
    assert len(curve) == 12_000
    np.testing.assert_array_equal(curve.steps, [s for s, _ in points])
    np.testing.assert_array_equal(curve.values, np.float32([v for _, v in points]).astype(np.float64))
    default = EventAccumulator(str(tmp_path))  # TensorBoard's default keeps a 10k sample
    default.Reload()
    assert len(default.Scalars(TAG)) == 10_000


def test_resumed_run_purges_and_duplicates_keep_the_last_write(tmp_path: Path) -> None:
    # First writer: steps 0..90 plus a rewrite of step 40; then "crashes" after step 90.
    _write(tmp_path, [(s, float(s)) for s in range(0, 100, 10)] + [(40, -4.0)], other=True)
    # Resumed from the checkpoint at step 60: everything logged at steps >= 61 is dropped.
    _write(tmp_path, [(s, s + 0.5) for s in range(70, 130, 10)], purge_step=61)
    assert len(event_files(tmp_path)) == 2
    curve = read_scalar(tmp_path, TAG)
    np.testing.assert_array_equal(curve.steps, [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120])
    np.testing.assert_array_equal(curve.values, [0, 10, 20, 30, -4, 50, 60, 70.5, 80.5, 90.5, 100.5, 110.5, 120.5])
    expected = _tensorboard_view(tmp_path)
    np.testing.assert_array_equal(curve.steps, expected.steps)
    np.testing.assert_array_equal(curve.values, expected.values)


def test_purge_drops_old_points_that_the_resumed_run_never_rewrites(tmp_path: Path) -> None:
    _write(tmp_path, [(s, 1.0) for s in range(0, 200, 10)])
    _write(tmp_path, [(s, 2.0) for s in range(110, 150, 10)], purge_step=101)  # killed again at 140
    curve = read_scalar(tmp_path, TAG)
    assert curve.steps[-1] == 140  # the first writer's 150..190 are gone
    assert np.all(curve.values[curve.steps > 100] == 2.0)
    np.testing.assert_array_equal(curve.steps, _tensorboard_view(tmp_path).steps)


def test_fast_reader_equals_exact_reader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    steps = np.concatenate([[0], rng.integers(1, 2**40, size=300)])  # step 0 is not serialised; long varints
    _write(tmp_path, [(int(s), float(v)) for s, v in zip(steps, rng.normal(size=steps.size))], other=True)
    _write(tmp_path, [(2**39 + s, 1.0) for s in range(0, 50)], purge_step=2**39)  # drops about half
    fast, exact = read_scalar(tmp_path, TAG), read_scalar(tmp_path, TAG, exact=True)
    assert 100 < len(fast) < 301
    np.testing.assert_array_equal(fast.steps, exact.steps)
    np.testing.assert_array_equal(fast.values, exact.values)


def test_new_style_tensor_scalars_and_truncated_tail(tmp_path: Path) -> None:
    _write(tmp_path, [(s, s / 2) for s in range(1, 6)], new_style=True)
    (path,) = event_files(tmp_path)
    with path.open("ab") as handle:  # a writer killed in the middle of a record
        handle.write(b"\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00partial")
    curve = read_scalar(tmp_path, TAG)
    np.testing.assert_array_equal(curve.steps, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(curve.values, [0.5, 1.0, 1.5, 2.0, 2.5])


def test_non_finite_points_are_dropped_and_empty_dirs_give_empty_curves(tmp_path: Path) -> None:
    _write(tmp_path, [(1, 1.0), (2, float("nan")), (3, float("inf")), (4, 4.0)])
    curve = read_scalar(tmp_path, TAG)
    np.testing.assert_array_equal(curve.steps, [1, 4])
    assert len(read_scalar(tmp_path, "no/such_tag")) == 0
    assert len(read_scalar(tmp_path / "missing", TAG)) == 0


def _curve(steps: list[int], values: list[float]) -> Curve:
    return Curve(np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64))


def test_grid_never_extends_past_the_shortest_run() -> None:
    long = _curve([0, 100, 200, 300, 400], [0, 1, 2, 3, 4])
    short = _curve([50, 150, 250], [10, 20, 30])
    grid = common_grid([long, short], num_points=5)
    np.testing.assert_array_equal(grid.steps, [50, 100, 150, 200, 250])
    # Linear interpolation, exact at logged steps.
    np.testing.assert_allclose(grid.values, [[0.5, 1.0, 1.5, 2.0, 2.5], [10, 15, 20, 25, 30]])
    assert grid.used == [0, 1] and grid.warnings == []


def test_grid_with_a_short_range_has_fewer_points_and_no_duplicates() -> None:
    grid = common_grid([_curve([0, 3], [0, 3]), _curve([0, 4], [0, 8])], num_points=100)
    np.testing.assert_array_equal(grid.steps, [0, 1, 2, 3])
    np.testing.assert_allclose(grid.values[1], [0, 2, 4, 6])


def test_grid_leaves_out_runs_with_zero_or_one_point_with_a_warning() -> None:
    good = _curve([0, 10], [0, 1])
    grid = common_grid([good, _curve([], []), _curve([5], [1])], num_points=3, names=["a", "b", "c"])
    assert grid.used == [0]
    np.testing.assert_array_equal(grid.steps, [0, 5, 10])
    assert any(w.startswith("b: 0 curve point") for w in grid.warnings)
    assert any(w.startswith("c: 1 curve point") for w in grid.warnings)
    nothing = common_grid([_curve([], [])], num_points=3)
    assert nothing.steps.size == 0 and nothing.used == []


def test_grid_of_disjoint_runs_is_empty_with_a_warning() -> None:
    grid = common_grid([_curve([0, 10], [0, 1]), _curve([20, 30], [0, 1])], num_points=4)
    assert grid.steps.size == 0
    assert "do not overlap" in grid.warnings[0]
    with pytest.raises(ValueError):
        common_grid([_curve([0, 10], [0, 1])], num_points=0)


def test_reader_is_fast_on_a_large_file(tmp_path: Path) -> None:
    _write(tmp_path, [(10 * i, float(i)) for i in range(20_000)], other=True)
    start = time.perf_counter()
    curve = read_scalar(tmp_path, TAG)
    elapsed = time.perf_counter() - start
    assert len(curve) == 20_000
    assert elapsed < 0.5, f"reading 40k records took {elapsed:.2f} s"
