"""``crm-scorer score --in events.jsonl --out results.jsonl``: score a file with the streaming engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from consumer.commands.offline import score_file
from consumer.service import build_offline_engine
from consumer.settings import load_settings
from schemas import load_catalog


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("score", help="score a JSONL file of events offline")
    parser.add_argument("--in", dest="source", type=Path, required=True, help="JSONL, one event per line")
    parser.add_argument("--out", dest="target", type=Path, required=True, help="JSONL, one score result per line")
    parser.add_argument("--config", type=Path, default=None, help="scorer.yaml (default: configs/scorer.yaml)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    engine = build_offline_engine(load_settings(args.config))
    summary = score_file(engine, args.source, args.target, load_catalog().application_event_latest)
    print(
        f"scored {summary.scored} of {summary.lines} lines ({summary.invalid} invalid) "
        f"in {summary.seconds:.2f} s: {summary.events_per_s:,.0f} events/s",
        file=sys.stderr,
    )
    return 0
