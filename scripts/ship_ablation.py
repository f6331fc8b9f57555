"""Copy what ``rlopt report`` reads out of a finished sweep into a folder that can be committed (issue 18).

A shipped ablation (``benchmarks/ablations/<name>/``) holds the sweep file, the manifest (and a tuned
sweep's ``tuning.json``), each run's ``config.yaml`` and ``summary.json`` and its curve files
(``curves/<arm>/seed_<k>[.eval].csv``, written by the sweep) -- no event files, checkpoints or logs --
and the report generated from exactly those files, so ``rlopt report benchmarks/ablations/<name>`` regenerates it byte for byte
(``tests/test_shipped_ablations.py`` checks it).

    python scripts/ship_ablation.py SWEEP_OUT benchmarks/ablations/NAME [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

SHIPPED_SWEEP_FILES = ("sweep.yaml", "manifest.json", "tuning.json")
"""The sweep's own files the report reads (``tuning.json``: a tuned sweep's trials, when there is one)."""
SHIPPED_RUN_FILES = ("config.yaml", "summary.json")
"""Per run, the files copied from its run directory (the report reads summary.json)."""


def ship(out: Path, dest: Path) -> int:
    """Copy ``out``'s report inputs into the new directory ``dest``; the number of runs copied."""
    manifest = json.loads((out / "manifest.json").read_text())
    dest.mkdir(parents=True)
    for name in SHIPPED_SWEEP_FILES:
        if (out / name).is_file():
            shutil.copy2(out / name, dest / name)
    if (out / "curves").is_dir():
        shutil.copytree(out / "curves", dest / "curves")
    runs = 0
    for run in manifest["runs"]:
        source = out / run["run_dir"]
        for name in SHIPPED_RUN_FILES:
            if (source / name).is_file():
                (dest / run["run_dir"]).mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / name, dest / run["run_dir"] / name)
        runs += 1
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("out", type=Path, help="a finished sweep's output directory")
    parser.add_argument("dest", type=Path, help="the new folder (must not exist)")
    parser.add_argument("--seed", type=int, default=0, help="the report's bootstrap seed (default 0)")
    args = parser.parse_args()
    if not (args.out / "manifest.json").is_file():
        parser.error(f"{args.out}: no manifest.json (not a sweep output directory)")
    if args.dest.exists():
        parser.error(f"{args.dest}: exists; ship into a new folder")
    runs = ship(args.out, args.dest)
    print(f"shipped {runs} runs into {args.dest}", file=sys.stderr)
    from rlopt.cli import main as rlopt_main

    sys.exit(rlopt_main(["report", str(args.dest), "--seed", str(args.seed)]))


if __name__ == "__main__":
    main()
