"""``crm-producer selection-report``: what training a bank on its routed rows costs after a policy change, and
whether a correction wins it back (``producer_tools.retraining.selection``; docs/retraining.md).

Builds a capture of the world with the policy change offline (the scorer's engine, the world's outcomes, the
monitor's core and capture writer; no broker), trains the bank on it several ways and prints a Markdown table
of each one's AUC on every application after the evaluation cut, with the world's labels.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from producer_tools.retraining.selection import SelectionStudy, run_study
from producer_tools.world.outcomes import PolicyChange
from schemas.errors import CrmScorerError


def register(subparsers: Any) -> None:
    """Add the ``selection-report`` subcommand to ``crm-producer``."""
    parser = subparsers.add_parser(
        "selection-report",
        help="the cost of selected labels when retraining a bank from the capture, and whether a correction helps",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    defaults = SelectionStudy()
    add = parser.add_argument
    add("--count", type=int, default=defaults.count, help="world events to score and answer")
    add("--seed", type=int, default=defaults.seed, help="the world's seed (also seeds its outcomes)")
    add(
        "--policy-change", type=PolicyChange.parse, default=defaults.policy, help="BANK@N[:SIZE] (default bank_c@20000)"
    )
    add("--evaluation", type=float, default=defaults.evaluation, help="share of post-change events held out")
    add("--training-seed", type=int, default=defaults.training_seed, help="seed of the models trained")
    add("--capture-dir", type=Path, default=None, help="keep the capture here (an empty or new directory)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the study; the report on stdout, progress on stderr."""
    study = SelectionStudy(args.count, args.seed, args.policy_change, args.evaluation, args.training_seed)
    if not args.policy_change.from_event < study.cut < args.count:
        message = "--count must leave events after the change both to train and to evaluate on"
        print(f"crm-producer selection-report: {message}", file=sys.stderr)
        return 2
    if args.capture_dir is not None and args.capture_dir.exists() and any(args.capture_dir.iterdir()):
        print(f"crm-producer selection-report: --capture-dir {args.capture_dir} is not empty", file=sys.stderr)
        return 2
    try:
        if args.capture_dir is not None:
            report = run_study(study, args.capture_dir, log=_progress)
        else:
            with tempfile.TemporaryDirectory(prefix="crm-capture-") as directory:
                report = run_study(study, Path(directory), log=_progress)
    except CrmScorerError as exc:
        print(f"crm-producer selection-report: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report.lines()))
    return 0


def _progress(message: str) -> None:
    if "fold" not in message:
        print(message, file=sys.stderr, flush=True)
