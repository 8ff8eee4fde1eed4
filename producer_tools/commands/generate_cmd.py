"""``crm-producer generate``: write a seeded batch of the synthetic world as JSON lines.

One event per line in the JSON view (``schemas.json_view``), plus its ``truth`` with ``--labels``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from producer_tools.world import SCENARIOS, SCHEMA_VERSIONS, generate
from schemas.json_view import to_json_view


def register(subparsers: Any) -> None:
    """Add the ``generate`` subcommand to ``crm-producer``."""
    parser = subparsers.add_parser(
        "generate",
        help="write synthetic application events (JSON lines)",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("--count", type=_count, required=True, help="number of events")
    parser.add_argument("--seed", type=int, required=True, help="same seed, same events")
    parser.add_argument("--scenario", choices=SCENARIOS, default="baseline", help="the world's scenario")
    parser.add_argument("--schema-version", choices=SCHEMA_VERSIONS, default="v1", help="application event schema")
    parser.add_argument("--labels", action="store_true", help="add each event's ground truth as 'truth'")
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file to write")
    parser.set_defaults(handler=run)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Generate and write the batch; print a one-line summary to stderr. Exits 2 when ``--out`` cannot be written."""
    started = time.perf_counter()
    batch = generate(args.count, args.seed, scenario=args.scenario, schema_version=args.schema_version)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", encoding="utf-8") as out:
            for event, truth in zip(batch.events, batch.truth, strict=True):
                line = to_json_view(event)
                if args.labels:
                    line["truth"] = truth
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
    except OSError as exc:
        print(f"crm-producer generate: cannot write --out {args.out}: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started
    summary = f"{len(batch.events)} events ({args.scenario}, {args.schema_version}) in {elapsed:.2f} s"
    print(f"generated {summary} -> {args.out}", file=sys.stderr)
    return 0
