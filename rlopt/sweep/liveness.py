"""Which driver runs a trial of a shared Optuna study (:mod:`rlopt.sweep.tuning`): heartbeats on the
trials a driver runs, a watch telling a killed driver's trials (their heartbeat stands still) from a
live one's, and asking a dead trial's parameters again."""

from __future__ import annotations

import threading
import time
from typing import Any

RETRY_OF = "retry_of"
"""User attribute of a trial asking again the parameters of the trial (its number) a killed driver left
RUNNING (that one is marked FAIL and does not count)."""
HEARTBEAT = "heartbeat"
"""User attribute a driver sets to the time (its clock) on each trial it runs, every :data:`HEARTBEAT_SECONDS`."""
HEARTBEAT_SECONDS = 5.0
"""Interval of a running driver's heartbeats."""
STALE_AFTER_SECONDS = 3 * HEARTBEAT_SECONDS
"""A RUNNING trial whose heartbeat did not move for this long (watched by the next driver, so no clocks
are compared) was left by a killed driver; one whose heartbeat moved is another live driver's."""


def ask_again(study: Any, number: int, params: dict[str, Any]) -> None:
    """Mark trial ``number`` FAIL and enqueue its ``params`` again, the new trial naming it in its
    :data:`RETRY_OF` user attribute (it does not count against the budget)."""
    from optuna.trial import TrialState

    study.tell(number, state=TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={RETRY_OF: number}, skip_if_exists=False)


def running_trials(studies: dict[str, Any]) -> dict[tuple[str, int], Any]:
    """Every RUNNING trial, ``(arm, number)``, with its :data:`HEARTBEAT` (None if it has none)."""
    from optuna.trial import TrialState

    running = ((arm, t) for arm, study in studies.items()
               for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))  # fmt: skip
    return {(arm, t.number): t.user_attrs.get(HEARTBEAT) for arm, t in running}


class StaleWatch:
    """Which RUNNING trials of other drivers stopped beating: a trial whose heartbeat has not moved for
    ``stale_after`` seconds of this watch (no clocks compared) was left by a killed driver."""

    def __init__(self, stale_after: float = STALE_AFTER_SECONDS) -> None:
        self.stale_after = stale_after
        self._seen: dict[tuple[str, int], tuple[Any, float]] = {}

    def stale(self, studies: dict[str, Any]) -> list[tuple[str, int]]:
        now, running = time.monotonic(), running_trials(studies)
        for key, beat in running.items():
            if key not in self._seen or self._seen[key][0] != beat:
                self._seen[key] = (beat, now)
        self._seen = {key: seen for key, seen in self._seen.items() if key in running}
        return [key for key, (_, since) in self._seen.items() if now - since >= self.stale_after]


def ask_again_stale(studies: dict[str, Any], stale: list[tuple[str, int]]) -> None:
    """:func:`ask_again` each ``(arm, number)`` of ``stale``."""
    for arm, number in stale:
        trial = next(t for t in studies[arm].get_trials(deepcopy=False) if t.number == number)
        ask_again(studies[arm], number, trial.params)


def recover(studies: dict[str, Any], stale_after: float = STALE_AFTER_SECONDS) -> tuple[int, int]:
    """Before the first round: if trials are RUNNING, watch their heartbeats for ``stale_after`` seconds
    and ask again (:func:`ask_again`) those that stood still (a killed driver's: asked first, so a killed
    and restarted study asks what an uninterrupted one asks). Returns (asked again, still running: another
    live driver's, left to it)."""
    if not running_trials(studies):
        return 0, 0
    print(f"rlopt: {len(running_trials(studies))} trials RUNNING in the study storage: watching their heartbeats for "
          f"{stale_after:g} s", flush=True)  # fmt: skip
    watch = StaleWatch(stale_after)
    watch.stale(studies)
    time.sleep(stale_after)
    stale = watch.stale(studies)
    ask_again_stale(studies, stale)
    return len(stale), len(running_trials(studies))


class Heartbeats:
    """While open, set each trial's :data:`HEARTBEAT` every ``seconds`` (from a daemon thread)."""

    def __init__(self, trials: list[Any], seconds: float = HEARTBEAT_SECONDS) -> None:
        self.trials, self.seconds = trials, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="rlopt-heartbeats", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds):
            for trial in self.trials:
                try:
                    trial.set_user_attr(HEARTBEAT, time.time())
                except Exception:  # noqa: BLE001 (a busy database: one missed beat of the three a trial may miss)
                    continue

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
