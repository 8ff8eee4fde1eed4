"""``crm-scorer reasons-report --in events.jsonl``: how accurate and how costly every bank's reasons are.

It prints, per bank, the largest difference between the scorer's contributions and XGBoost's own approximate
ones (float32 precision is the bar), how often the top reasons agree with exact TreeSHAP, and the cost per event
of the reasons before (one explained bank) and now (every bank), measured in turn on the same batches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from consumer.core.reason_report import bank_accuracy, reason_cost
from consumer.settings import load_settings
from models.artifacts import load_models
from models.features import build_features
from schemas import load_catalog
from schemas.json_view import from_json_view


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reasons-report", help="reasons' agreement with XGBoost and exact TreeSHAP, and their cost per event"
    )
    parser.add_argument("--in", dest="source", type=Path, required=True, help="JSONL events (crm-producer generate)")
    parser.add_argument("--config", type=Path, default=None, help="scorer.yaml (default: configs/scorer.yaml)")
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds; each variant keeps its fastest")
    parser.add_argument("--no-accuracy", action="store_true", help="only the cost (exact TreeSHAP takes a while)")
    parser.add_argument("--no-cost", action="store_true", help="only the accuracy")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    models = load_models(settings.models)
    schema = load_catalog().application_event_latest
    try:
        with args.source.open(encoding="utf-8") as lines:
            events = [from_json_view(json.loads(line), schema.raw) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        print(f"crm-scorer reasons-report: {args.source}: {exc}", file=sys.stderr)
        return 2
    frame = build_features(events)
    k = settings.models.reasons
    print(f"{len(events):,} events, top {k} reasons, load average {_load()}")
    if not args.no_accuracy:
        print("bank     max |ours - xgboost approx|  (max |contribution|)  float32  top-3 = TreeSHAP's: set  order")
        reports = [bank_accuracy(bank, frame, k) for bank in models.banks]
        for a in reports:
            float32 = "yes" if a.within_float32 else "NO"
            print(
                f"{a.bank:<8} {a.max_abs_difference:>27.3g}  ({a.max_contribution:>18.3f})  "
                f"{float32:>7}  {a.same_top_set:>24.1%}  {a.same_top_order:>5.1%}"
            )
        same_set = sum(a.same_top_set * a.rows for a in reports) / sum(a.rows for a in reports)
        same_order = sum(a.same_top_order * a.rows for a in reports) / sum(a.rows for a in reports)
        worst = max(a.max_abs_difference for a in reports)
        print(
            f"{'all':<8} {worst:>27.3g}  {'':20}  {'yes' if all(a.within_float32 for a in reports) else 'NO':>7}  "
            f"{same_set:>24.1%}  {same_order:>5.1%}   ({sum(a.rows for a in reports):,} bank decisions)"
        )
    if not args.no_cost:
        c = reason_cost(models, frame, k, settings.consumer.batch_size, args.repeats)
        banks = len(models.banks)
        print(
            f"us/event (fastest per batch of {args.repeats} rounds): {banks} banks and the lead predicted, no reasons "
            f"{c.predict_only_us:.1f}; with one bank's reasons (before) {c.one_bank_us:.1f}; with every bank's "
            f"and the lead's reasons (now) {c.every_bank_us:.1f}"
        )
        print(
            f"reasons alone: before {c.one_bank_reasons_us:.1f} us/event (one bank), now "
            f"{c.every_bank_reasons_us:.1f} us/event ({banks} banks and the lead); load average {_load()}"
        )
    return 0


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"
