"""``crm-producer demo``: the whole product on one machine, in one command.

Broker, synthetic traffic with a little malformed input and the scorer, with live output, until ``--events``
are scored or dead-lettered (or Ctrl-C). What it starts and when it ends: :mod:`producer_tools.demos.scoring`.
"""

from __future__ import annotations

import argparse
import os

from producer_tools.demos.scoring import run_demo
from producer_tools.servers.broker import BOOTSTRAP_ENV, KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="broker + synthetic traffic + scorer, with live output")
    parser.add_argument(
        "--events",
        type=int,
        default=int(os.environ.get("EVENTS", "20000")),
        help="stop once this many are scored or dead-lettered (0: run until Ctrl-C)",
    )
    parser.add_argument("--rate", type=float, default=5000.0, help="events/s offered by the synthetic CRM")
    parser.add_argument("--bad-ratio", type=float, default=0.01, help="share of malformed messages")
    parser.add_argument("--metrics-port", type=int, default=9400, help="the scorer's metrics port")
    parser.add_argument("--workers", type=int, default=1, help="scorer worker processes")
    parser.add_argument("--seed", type=int, default=2026, help="the synthetic world's seed")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print each sampled score result as its full JSON record instead of the tail table",
    )
    parser.add_argument(
        "--broker",
        choices=KINDS,
        default=None,
        help="local broker: tansu (default, no Java) or kafka (Apache Kafka; needs java and mvn); "
        f"$CRM_BROKER sets the default; ${BOOTSTRAP_ENV} names a running cluster",
    )
    parser.set_defaults(handler=run_demo)
