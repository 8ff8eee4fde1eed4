"""``crm-scorer run``: the streaming scorer. Every flag is also a scorer.yaml key and a CRM_SCORER_* variable."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from consumer.host.supervisor import run_workers
from consumer.settings import load_settings
from consumer.telemetry.host import serve_telemetry


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="consume application events and publish scores")
    parser.add_argument("--config", type=Path, default=None, help="scorer.yaml (default: configs/scorer.yaml)")
    parser.add_argument("--bootstrap-servers", help="kafka.bootstrap_servers")
    parser.add_argument("--group-id", help="consumer.group_id")
    parser.add_argument("--input-topic", help="topics.input")
    parser.add_argument("--output-topic", help="topics.output")
    parser.add_argument("--dlq-topic", help="topics.dlq")
    parser.add_argument("--metrics-port", type=int, help="metrics.port (0 = pick a free port)")
    parser.add_argument("--workers", type=int, help="worker processes in the group on this host")
    parser.add_argument("--guarantee", choices=["at_least_once", "exactly_once"])
    parser.add_argument("--schema-registry-url", help="schema_registry.url (Confluent framing)")
    parser.add_argument("--batch-size", type=int, help="consumer.batch_size")
    parser.add_argument("--log-json", action="store_const", const=True, help="log.json: one JSON object per line")
    parser.set_defaults(handler=run)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as nested settings (None = not given, so the file and environment still apply)."""
    return {
        "kafka": {"bootstrap_servers": args.bootstrap_servers},
        "consumer": {"group_id": args.group_id, "batch_size": args.batch_size},
        "topics": {"input": args.input_topic, "output": args.output_topic, "dlq": args.dlq_topic},
        "metrics": {"port": args.metrics_port},
        "workers": args.workers,
        "guarantee": args.guarantee,
        "schema_registry": {"url": args.schema_registry_url},
        "log": {"json": args.log_json},
    }


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, **overrides(args))
    with serve_telemetry(settings) as observer_factory:
        return run_workers(settings, observer_factory)
