"""``crm-scorer bench-engine --messages FILE [--challenger DIR]``: the engine's ceiling on recorded message values,
no Kafka; with ``--challenger`` a set scored in the champion's shadow (its cost per model: ``<model>:challenger``).

``crm-scorer bench`` runs it in a fresh process for its ``ceiling`` line; run alone, it profiles the engine on
any capture written by ``consumer.commands.engine_bench.write_messages``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import partial
from pathlib import Path

from consumer.commands.engine_bench import EngineMeasurement, measure_engine, read_messages
from consumer.core.challenger import Challenger, challenged_names
from consumer.core.engine import ScoringEngine
from consumer.service import build_engine
from consumer.settings import Settings, load_settings
from models.artifacts import load_models


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench-engine", help="score recorded message values in this process (no Kafka) and report the cost"
    )
    parser.add_argument("--messages", type=Path, required=True, help="length-prefixed message values")
    parser.add_argument("--config", type=Path, default=None, help="scorer.yaml (default: configs/scorer.yaml)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: consumer.batch_size")
    parser.add_argument("--json", dest="json_path", type=Path, default=None, help="write the measurement here")
    parser.add_argument(
        "--challenger", type=Path, default=None, help="a model set scored in the shadow of the champion"
    )
    parser.add_argument(
        "--challenger-model",
        action="append",
        default=[],
        help="a model it challenges (default: every one that differs)",
    )
    parser.add_argument(
        "--markers",
        action="store_true",
        help="call os.getpgrp() at every batch and stage edge, for valgrind --dump-before (make bench-instructions)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, schema_registry={"url": None})
    try:
        values = read_messages(args.messages)
    except (OSError, ValueError) as exc:
        print(f"crm-scorer bench-engine: {exc}", file=sys.stderr)
        return 2
    batch_size = args.batch_size or settings.consumer.batch_size
    make = (
        build_engine if args.challenger is None else partial(_with_challenger, args.challenger, args.challenger_model)
    )
    marker = os.getpgrp if args.markers else None  # a C call nothing else makes while scoring
    measurement = measure_engine(lambda: make(settings), values, batch_size, marker)
    print(summary_line(measurement))
    if args.json_path is not None:
        args.json_path.write_text(json.dumps(measurement.as_dict(), indent=1) + "\n")
    return 0


def _with_challenger(directory: Path, names: list[str], settings: Settings) -> ScoringEngine:
    """The engine with the set in ``directory`` (verified and loaded) as its challenger."""
    engine = build_engine(settings)
    candidate = load_models(settings.models, directory)
    engine.set_challenger(Challenger(candidate, challenged_names(engine.models, candidate, tuple(names))))
    return engine


def summary_line(m: EngineMeasurement) -> str:
    """``20,000 events in 1.21 s: 16,529 events/s (decode 15.1 us, ...)``."""
    stages = ", ".join(f"{k} {v:.1f} us" for k, v in {**m.stage_us, **m.model_us}.items())
    return f"{m.events:,} events in {m.seconds:.2f} s: {m.events_per_s:,.0f} events/s ({stages})"
