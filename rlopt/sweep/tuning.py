"""Tune each arm of a sweep with a ``search:`` block: one Optuna study per arm, trials as ordinary runs.

Trials run in rounds: each round asks one trial of every arm still under budget and runs its
``seeds_per_trial`` runs (``OUT/tuning/<arm>/trial_<n>/seed_<k>/``) on the sweep's backend, then tells
each study the trial's score. One trial per arm per round keeps every study sequential, so the sampler,
seeded per trial from ``search.seed``, the arm and the trial's index, asks the same parameters for the
same sweep whatever ``--workers`` is and however often the driver was killed. A driver beats each
trial it runs (:mod:`rlopt.sweep.liveness`); an interrupted driver marks its trials FAIL and asks them
again with the same parameters, and so does the next driver for trials whose heartbeat stood still (a
killed driver's). A trial whose
heartbeat moves belongs to a live driver: several drivers (on several machines, one ``--storage``) share
a study, each asking within the budget the others' finished and running trials leave (Optuna has no atomic
"ask if under budget": drivers asking the last slot at once may overshoot it by one each); the same parameters
for the same sweep then hold only as far as the drivers' interleaving repeats. The studies live in
``OUT/tuning.db`` (SQLite) or ``--storage URL``; ``OUT/tuning.json`` mirrors them for the report.
With ``pruner: median`` the runs' curves are read while they run (:mod:`rlopt.sweep.pruning`); a pruned
trial is told PRUNED, never FAIL.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rlopt.config import config_to_yaml
from rlopt.curves import read_scalar
from rlopt.errors import ConfigError, shorten
from rlopt.files import atomic_write_bytes
from rlopt.run_files import SUMMARY_FILE
from rlopt.sweep.messages import SHOWN_CHARS
from rlopt.sweep import liveness
from rlopt.sweep.liveness import HEARTBEAT, RETRY_OF, Heartbeats, StaleWatch, ask_again, ask_again_stale, recover
from rlopt.sweep.runner import EXIT_INTERRUPTED, RunJob
from rlopt.sweep.pruning import TRIAL_FLUSH_SECONDS, Pruning, TrialWatch, curve_value, make_pruner
from rlopt.sweep.search import Search, tuning_seeds
from rlopt.sweep.spec import Arm, Sweep, _build, _SweepErrors, build_runs, read_yaml

TUNING_DIR = "tuning"
TUNING_DB = "tuning.db"
TUNING_JSON = "tuning.json"
FAILED_RUN = "failed_run"
"""User attribute of a trial one of whose runs failed (counts against the budget, never retried)."""
SPACE_ATTR = "space"
RunJobs = Callable[[list[RunJob], Callable[[int], None], Callable[[int, int, float], None]], bool]
"""Runs jobs on the sweep's backend: ``(jobs, on_start, on_done) -> interrupted``."""


def import_optuna() -> Any:
    """``import optuna`` (quiet) or a one-line ConfigError telling how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError('search: optuna is not installed; pip install "rlopt[tune]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def default_storage(out: Path) -> str:
    return f"sqlite:///{out.absolute() / TUNING_DB}"


SCHEMA_RACES = ("already exists", "UNIQUE constraint failed", "database is locked")
"""What opening a new database says when another driver is creating its tables at the same moment."""
SCHEMA_ATTEMPTS = 5
"""Tries to open a storage while another driver creates its tables (1 s apart)."""


def open_storage(url: str) -> Any:
    """An Optuna RDB storage at ``url`` or a one-line ConfigError (before any run)."""
    optuna = import_optuna()
    try:
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                return optuna.storages.RDBStorage(url)
            except Exception as err:  # noqa: BLE001
                if attempt + 1 == SCHEMA_ATTEMPTS or not any(race in str(err) for race in SCHEMA_RACES):
                    raise
                time.sleep(1.0)  # another driver is creating the tables of this new database: again, once they exist
    except Exception as err:  # noqa: BLE001 (SQLAlchemy raises many kinds: all mean "cannot open")
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        raise ConfigError(f"--storage {shorten(url, SHOWN_CHARS)} cannot be opened ({type(err).__name__}: {reason})") from None


def study_name(sweep: Sweep, arm: str) -> str:
    return f"{sweep.name}/{arm}"


def _space_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    for key in [*new, *(k for k in old if k not in new)]:
        if old.get(key) != new.get(key):
            return key
    return None


def open_studies(sweep: Sweep, storage: Any) -> dict[str, Any]:
    """Each tuned arm's study (created or loaded); a stored study with another space is refused, naming the key."""
    optuna = import_optuna()
    studies = {}
    for arm, search in sweep.searches.items():
        name = study_name(sweep, arm)
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
        stored = study.user_attrs.get(SPACE_ATTR)
        if stored is not None and stored != search.space_json():
            key = _space_difference(json.loads(stored), search.space)
            raise ConfigError(f"sweep {sweep.name}, arm {arm}: the study {name} in the storage has another search space "
                              f"(search.space.{key} differs); use another --out or --storage")  # fmt: skip
        studies[arm] = study
    for arm, study in studies.items():
        if SPACE_ATTR not in study.user_attrs:
            study.set_user_attr(SPACE_ATTR, sweep.searches[arm].space_json())
    return studies


def _counted(study: Any) -> list[Any]:
    """Trials that count against the budget: all but those retried after a killed driver and those not told yet."""
    optuna = import_optuna()
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    return [t for t in trials if t.number not in retried
            and t.state not in (optuna.trial.TrialState.WAITING, optuna.trial.TrialState.RUNNING)]  # fmt: skip


def make_sampler(search: Search, seed: int) -> Any:
    optuna = import_optuna()
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "grid":
        return optuna.samplers.GridSampler({k: d["choice"] for k, d in search.space.items()}, seed=search.seed)
    return optuna.samplers.TPESampler(seed=seed)


def suggest(trial: Any, search: Search) -> dict[str, Any]:
    """The trial's value of each key of the space (Optuna's distributions)."""
    values = {}
    for key, dist in search.space.items():
        kind, args = next(iter(dist.items()))
        if kind == "choice":
            values[key] = trial.suggest_categorical(key, args)
        elif kind == "int":
            values[key] = trial.suggest_int(key, args[0], args[1])
        else:
            values[key] = trial.suggest_float(key, args[0], args[1], log=kind == "log_uniform")
    return values


def score(run_dir: Path, objective: str, curve: str) -> float:
    """A finished run's score: a summary.json number, or ``final``/``auc`` of its curve (nan if none)."""
    if objective not in ("final", "auc"):
        try:
            value = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8")).get(objective)
        except (OSError, ValueError):
            return math.nan
        return float(value) if isinstance(value, (int, float)) else math.nan
    return curve_value(read_scalar(run_dir, curve), objective)


class _Trial:
    """One asked trial: its runs' directories and jobs, and its pruning watch (None without a pruner)."""

    def __init__(self, sweep: Sweep, out: Path, arm: Arm, trial: Any, values: dict[str, Any],
                 base_tree: dict[str, Any], validate: Any, env: dict[str, str]) -> None:  # fmt: skip
        search = sweep.searches[arm.name]
        self.arm, self.trial, self.values = arm.name, trial, values
        root = out / TUNING_DIR / arm.name / f"trial_{trial.number}"
        root.mkdir(parents=True, exist_ok=True)
        steps = {"total_steps": search.total_steps} if search.total_steps else {}
        live = {"log.flush_seconds": TRIAL_FLUSH_SECONDS} if search.pruner == "median" else {}
        self.run_dirs, self.jobs = [], []
        fail = _SweepErrors(sweep.name)
        for seed in tuning_seeds(sweep.seeds, search.seeds_per_trial):
            cfg = _build(base_tree, {**sweep.set, **arm.overrides, **steps, **live, **values}, seed,
                         sweep.threads_per_run, validate, fail, arm.name)  # fmt: skip
            config_file, run_dir = root / f"seed_{seed}.yaml", root / f"seed_{seed}"
            atomic_write_bytes(config_file, config_to_yaml(cfg).encode("utf-8"))
            if run_dir.exists():
                shutil.rmtree(run_dir)
            self.run_dirs.append(run_dir)
            args = ["-m", "rlopt", "train", str(config_file), "--run-dir", str(run_dir), "--no-progress"]
            self.jobs.append(RunJob(args=args, log_path=str(root / f"seed_{seed}.log"), env=env, cwd=os.getcwd()))
        self.watch = TrialWatch(trial, self.run_dirs, cfg.total_steps, search.objective, sweep.curve) if live else None

    @property
    def pruned_at(self) -> int | None:
        return self.watch.pruned_at if self.watch is not None else None


def _tell(study: Any, t: _Trial, codes: list[int | None], search: Search, curve: str) -> str | None:
    """Tell ``study`` how trial ``t`` ended (its runs' exit ``codes``); the line to print, or None when a run
    was interrupted (the trial stays RUNNING: asked again next time)."""
    optuna = import_optuna()
    if t.pruned_at is None and any(code == EXIT_INTERRUPTED or code is None for code in codes):
        return None
    if t.watch is not None and all(code == 0 for code in codes):
        t.watch.advance(ended=True)  # the steps the poll did not see: the same reports and questions
    if t.pruned_at is not None:  # whatever its runs' exit codes: they were interrupted on purpose
        study.tell(t.trial, state=optuna.trial.TrialState.PRUNED)
        return f"PRUNED at step {t.pruned_at:,} (below the median of the finished trials)"
    scores = [score(d, search.objective, curve) for d in t.run_dirs]
    if any(code != 0 for code in codes) or not all(math.isfinite(s) for s in scores):
        t.trial.set_user_attr(FAILED_RUN, True)
        study.tell(t.trial, state=optuna.trial.TrialState.FAIL)
        return f"FAILED (a run failed or has no {search.objective}); logs in {t.run_dirs[0].parent}"
    study.tell(t.trial, float(np.mean(scores)))
    return f"{search.objective}={np.mean(scores):.4g}"


def tune(sweep: Sweep, out: Path, studies: dict[str, Any], validate: Any, env: dict[str, str], run_jobs: RunJobs) -> int | Sweep:
    """Run every arm's study (:func:`open_studies`) to its budget; returns the sweep at each arm's best
    parameters, or an exit code (130 interrupted: its trials are asked again next time; 1 an arm
    has no finished trial)."""
    retried, elsewhere = recover(studies)
    base_tree = read_yaml(sweep.base)
    arms = {arm.name: arm for arm in sweep.arms}
    print(f"sweep {sweep.name}: tuning {len(studies)} arms, "
          + ", ".join(f"{arm} {len(_counted(study))}/{sweep.searches[arm].trials}" for arm, study in studies.items())
          + (f" ({retried} interrupted trials asked again)" if retried else "")
          + (f" ({elsewhere} trials running in another driver)" if elsewhere else ""), flush=True)  # fmt: skip
    watch = StaleWatch()
    while True:
        ask_again_stale(studies, watch.stale(studies))  # another driver killed meanwhile
        asked: list[_Trial] = []
        waiting = False
        for arm, study in studies.items():
            search = sweep.searches[arm]
            # Between rounds no trial of this driver runs: the RUNNING ones are other drivers'.
            taken = len(_counted(study)) + len(liveness.running_trials({arm: study}))
            if taken >= search.trials:
                waiting = waiting or len(_counted(study)) < search.trials
                continue
            study.sampler = make_sampler(search, search.sampler_seed(arm, taken))
            study.pruner = make_pruner(search)
            trial = study.ask()
            trial.set_user_attr(HEARTBEAT, time.time())  # at once: a RUNNING trial always has one
            asked.append(_Trial(sweep, out, arms[arm], trial, suggest(trial, search), base_tree, validate, env))
        if not asked and not waiting:
            break
        if not asked:  # the budget is in other drivers' running trials: wait for them (or their staleness)
            time.sleep(liveness.HEARTBEAT_SECONDS)
            continue
        jobs = [job for t in asked for job in t.jobs]
        owner = [i for i, t in enumerate(asked) for _ in t.jobs]
        codes: dict[int, int] = {}
        with Heartbeats([t.trial for t in asked]), Pruning([t.watch for t in asked if t.watch is not None]):
            interrupted = run_jobs(jobs, lambda i: None, lambda i, code, seconds: codes.__setitem__(i, code))
        for i, t in enumerate(asked):
            mine = [codes.get(j) for j, o in enumerate(owner) if o == i]
            line = None if interrupted and t.pruned_at is None else _tell(studies[t.arm], t, mine, sweep.searches[t.arm], sweep.curve)
            if line is None:  # interrupted: asked again with the same parameters next time
                ask_again(studies[t.arm], t.trial.number, t.trial.params)
                continue
            params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.values.items())
            print(f"{t.arm} trial {t.trial.number} ({params}): {line}", flush=True)
        write_tuning_json(sweep, out, studies)
        if interrupted:
            return EXIT_INTERRUPTED
    write_tuning_json(sweep, out, studies)
    return tuned_sweep(sweep, studies, base_tree, validate)


def write_tuning_json(sweep: Sweep, out: Path, studies: dict[str, Any]) -> None:
    """``OUT/tuning.json``: per arm, every counted trial (number, params, value, state) and the best one."""
    data: dict[str, Any] = {}
    for arm, study in studies.items():
        trials = _counted(study)
        complete = [t for t in trials if t.value is not None and t.state.name == "COMPLETE"]
        best = max(complete, key=lambda t: t.value) if complete else None
        data[arm] = {
            "objective": sweep.searches[arm].objective,
            "trials": [{"number": t.number, "params": t.params, "value": t.value, "state": t.state.name} for t in trials],
            "best_params": best.params if best else None,
            "best_value": best.value if best else None,
        }
    atomic_write_bytes(out / TUNING_JSON, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def tuned_sweep(sweep: Sweep, studies: dict[str, Any], base_tree: dict[str, Any], validate: Any) -> int | Sweep:
    """The sweep whose tuned arms carry their best trial's parameters (1 when an arm has no finished trial)."""
    arms = []
    for arm in sweep.arms:
        study = studies.get(arm.name)
        if study is not None:
            complete = [t for t in _counted(study) if t.state.name == "COMPLETE"]
            if not complete:
                print(f"rlopt: arm {arm.name}: no trial finished; no final runs", flush=True)
                return 1
            best = max(complete, key=lambda t: t.value)
            arm = Arm(arm.name, {**arm.overrides, **best.params})
        arms.append(arm)
    fail = _SweepErrors(sweep.name)
    runs = build_runs(base_tree, sweep.set, arms, sweep.seeds, sweep.threads_per_run, validate, fail)
    return dataclasses.replace(sweep, arms=arms, runs=runs)


def print_tuning_plan(sweep: Sweep, out: Path) -> None:
    """``--dry-run``: each tuned arm's space and budget, the number of trial runs and final runs."""
    print(f"sweep {sweep.name}: tuned -> {out}; base {sweep.base}")
    for arm in sweep.arms:
        if arm.name not in sweep.searches:
            print(f"{arm.name}: not tuned")
    trial_runs = 0
    for arm, search in sweep.searches.items():
        space = ", ".join(f"{k}~{next(iter(d))}{next(iter(d.values()))}" for k, d in search.space.items())
        runs = search.trials * search.seeds_per_trial
        trial_runs += runs
        print(f"tune {arm}: {space}; {search.trials} trials x {search.seeds_per_trial} seeds "
              f"{tuning_seeds(sweep.seeds, search.seeds_per_trial)} = {runs} trial runs, "
              f"{search.sampler} sampler, objective {search.objective}, pruner {search.pruner}"
              + (f" (startup_trials {search.startup_trials}, warmup_steps {search.warmup_steps:,})"
                 if search.pruner == "median" else ""))  # fmt: skip
    print(f"sweep {sweep.name}: {trial_runs} trial runs, then {len(sweep.runs)} final runs "
          f"({len(sweep.arms)} arms x {len(sweep.seeds)} seeds)")  # fmt: skip
