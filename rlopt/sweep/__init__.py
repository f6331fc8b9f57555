"""Ablation sweeps: a sweep file of arms x seeds, run as ordinary ``rlopt train`` runs, resumable.

Modules, bottom up: :mod:`~rlopt.sweep.spec` (the sweep file, arms x seeds, every run's config
built and validated), :mod:`~rlopt.sweep.rendering` (each run's config as YAML, dict and hash,
rendered once per arm), :mod:`~rlopt.sweep.manifest` (the lock, ``manifest.json``, what each run
needs next), :mod:`~rlopt.sweep.runner` / :mod:`~rlopt.sweep.ray_backend` (subprocesses of
``rlopt train`` on a local pool or as Ray tasks), :mod:`~rlopt.sweep.hparams`,
:mod:`~rlopt.sweep.driver` (the whole sweep) and :mod:`~rlopt.sweep.command` (arguments; light to
import). See ``configs/sweeps/`` for examples.
"""

from rlopt.sweep.command import add_sweep_parser, sweep_command

__all__ = ["add_sweep_parser", "sweep_command"]
