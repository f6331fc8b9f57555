"""``rlopt report OUT``: compare the arms of a sweep with IQM, bootstrap CIs and probability of improvement.

:mod:`~rlopt.report.build` reads the sweep (manifest, summaries, curves via :mod:`rlopt.curves`)
and computes the report with :mod:`rlopt.stats`; :mod:`~rlopt.report.render` turns it into
Markdown and PNG plots. This module holds the command's arguments only, light to import so that
``rlopt --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rlopt.report.defaults import DEFAULT_CURVE_REPS, DEFAULT_REPS, MAX_REPS, METRIC_MODES


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``rlopt report OUT... [--baseline ARM] [--reps N] [--seed S] [--select KEY] [--out DIR]`` on the CLI."""
    parser = subparsers.add_parser("report", help="compare a sweep's arms: IQM, bootstrap CIs, plots", allow_abbrev=False)
    parser.add_argument("out", metavar="OUT", nargs="+",
                        help="a sweep directory written by rlopt sweep; several (one per env) with --out DIR aggregate")
    parser.add_argument("--baseline", metavar="ARM", help="arm to compare against (default: the sweep's baseline)")
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS,
                        help=f"bootstrap resamples, 1 to {MAX_REPS:,} (default {DEFAULT_REPS})")
    parser.add_argument("--curve-reps", type=int, default=DEFAULT_CURVE_REPS,
                        help=f"bootstrap resamples per learning-curve band, 1 to {MAX_REPS:,} (default {DEFAULT_CURVE_REPS})")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed, 0 to 2**63 - 1 (default 0)")
    parser.add_argument("--mode", choices=METRIC_MODES, help="max: higher scores are better, min: lower "
                        "(default: the sweep file's metric_mode, else max)")
    parser.add_argument("--threshold", type=float, help="success / steps-to-threshold level (default: the sweep file's)")
    parser.add_argument("--select", metavar="KEY", help="a grid key: per variant, its best value on half of the seeds, "
                        "reported on the other half")
    parser.add_argument("--out", dest="aggregate_out", metavar="DIR", help="aggregate OUT1 OUT2 ... (the same arms on "
                        "different envs) into the new directory DIR")
    parser.add_argument("--normalize", action="append", metavar="ENV=LOW,HIGH", help="with --out: the scores of ENV "
                        "mapped to 0 at LOW and 1 at HIGH (repeatable; default: the sweep file's normalize, else min-max)")
    parser.set_defaults(handler=report_command)
    return parser


def report_command(args: argparse.Namespace) -> int:
    """Run ``rlopt report``: write OUT/report/, print report.md's path and a compact table; exit code."""
    from rlopt.errors import ConfigError
    from rlopt.report.build import REPORT_DIR, build_report
    from rlopt.report.render import table_rows

    if args.aggregate_out is not None:
        return _aggregate_command(args)
    if len(args.out) > 1:
        raise ConfigError(f"report: {len(args.out)} OUT directories aggregate into a new directory: give --out DIR")
    if args.normalize:
        raise ConfigError("--normalize applies to an aggregate (--out DIR), not to one sweep")
    out = Path(args.out[0])
    report = build_report(out, baseline=args.baseline, reps=args.reps, seed=args.seed, curve_reps=args.curve_reps,
                          mode=args.mode, threshold=args.threshold, select=args.select)
    rows = [[row[0], row[1], row[2], row[5]] for row in table_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    chosen = report.get("select") or {}
    for group, entry in chosen.get("groups", {}).items():
        held = entry["heldout"]
        lines.append(f"select {chosen['key']}: {group} -> {entry['selected_value']}, held-out IQM {_num(held['iqm'], '.4g')} "
                     f"(n={held['n']})")
    return _print_result(lines, report["warnings"], out / REPORT_DIR / "report.md")


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _print_result(lines: list[str], warnings: list[str], markdown: Path) -> int:
    """Print the summary lines, the warnings (stderr) and where report.md is; exit code 0."""
    print("\n".join(lines))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report written to {markdown}")
    return 0


def _aggregate_command(args: argparse.Namespace) -> int:
    """``rlopt report OUT1 OUT2 ... --out DIR``: print each arm's aggregate IQM and optimality gap; exit code."""
    from rlopt.errors import ConfigError
    from rlopt.report.aggregate import aggregate
    from rlopt.report.render import ranked_arms

    for flag, value in (("--select", args.select), ("--threshold", args.threshold)):
        if value is not None:
            raise ConfigError(f"{flag} applies to one sweep, not to an aggregate (--out DIR)")
    report = aggregate(args.out, args.aggregate_out, reps=args.reps, seed=args.seed, baseline=args.baseline,
                       mode=args.mode, normalize=args.normalize)
    lines = [f"{arm}  n={e['n']}  IQM {_num(e['iqm'], '.3f')}  optimality gap {_num(e['optimality_gap'], '.3f')}"
             for arm, e in ((arm, report["arms"][arm]) for arm in ranked_arms(report))]
    return _print_result(lines, report["warnings"], Path(args.aggregate_out) / "report.md")
