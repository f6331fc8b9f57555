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
    """Register ``rlopt report OUT [--baseline ARM] [--reps N] [--seed S]`` on the CLI's subparsers."""
    parser = subparsers.add_parser("report", help="compare a sweep's arms: IQM, bootstrap CIs, plots", allow_abbrev=False)
    parser.add_argument("out", metavar="OUT", help="a sweep directory written by rlopt sweep")
    parser.add_argument("--baseline", metavar="ARM", help="arm to compare against (default: the sweep's baseline)")
    parser.add_argument("--reps", type=int, default=DEFAULT_REPS,
                        help=f"bootstrap resamples, 1 to {MAX_REPS:,} (default {DEFAULT_REPS})")
    parser.add_argument("--curve-reps", type=int, default=DEFAULT_CURVE_REPS,
                        help=f"bootstrap resamples per learning-curve band, 1 to {MAX_REPS:,} (default {DEFAULT_CURVE_REPS})")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed, 0 to 2**63 - 1 (default 0)")
    parser.add_argument("--mode", choices=METRIC_MODES, help="max: higher scores are better, min: lower "
                        "(default: the sweep file's metric_mode, else max)")
    parser.add_argument("--threshold", type=float, help="success / steps-to-threshold level (default: the sweep file's)")
    parser.set_defaults(handler=report_command)
    return parser


def report_command(args: argparse.Namespace) -> int:
    """Run ``rlopt report``: write OUT/report/, print report.md's path and a compact table; exit code."""
    from rlopt.report.build import REPORT_DIR, build_report
    from rlopt.report.render import table_rows

    out = Path(args.out)
    report = build_report(out, baseline=args.baseline, reps=args.reps, seed=args.seed,
                          curve_reps=args.curve_reps, mode=args.mode, threshold=args.threshold)
    rows = [[row[0], row[1], row[2], row[5]] for row in table_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report written to {out / REPORT_DIR / 'report.md'}")
    return 0
