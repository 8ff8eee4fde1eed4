"""``crm-scorer run``: the streaming scorer. Every flag is also a scorer.yaml key and a CRM_SCORER_* variable."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from consumer.cli_style import add_log_options
from consumer.host.supervisor import run_workers
from consumer.settings import load_settings
from consumer.telemetry.host import serve_telemetry

# The config file `run` reads when --config is absent (the image sets it: extra `docker run` arguments keep it).
CONFIG_ENV = "CRM_SCORER_CONFIG"
log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="consume application events and publish scores")
    parser.add_argument(
        "--config", type=Path, default=None, help=f"scorer.yaml (unset: ${CONFIG_ENV}, else configs/scorer.yaml)"
    )
    parser.add_argument("--bootstrap-servers", help="kafka.bootstrap_servers")
    parser.add_argument("--group-id", help="consumer.group_id")
    parser.add_argument("--input-topic", help="topics.input")
    parser.add_argument("--output-topic", help="topics.output")
    parser.add_argument("--dlq-topic", help="topics.dlq")
    parser.add_argument("--metrics-port", type=int, help="metrics.port (0 = pick a free port)")
    parser.add_argument("--workers", type=int, help="worker processes in the group on this host")
    parser.add_argument("--guarantee", choices=["at_least_once", "exactly_once"], help="guarantee: delivery semantics")
    parser.add_argument("--schema-registry-url", help="schema_registry.url (Confluent framing)")
    parser.add_argument("--batch-size", type=int, help="consumer.batch_size")
    add_log_options(parser, configure=False)  # log.level and log.json: the workers set their logging up
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
        "log": {"json": args.log_json, "level": args.log_level},
    }


def config_path(args: argparse.Namespace) -> Path | None:
    """--config, else the file ``$CRM_SCORER_CONFIG`` names (None: the default file, if there is one)."""
    named = os.environ.get(CONFIG_ENV)
    return args.config if args.config is not None else (Path(named) if named else None)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args), **overrides(args))
    if settings.source is None:
        log.warning(
            "NO CONFIG FILE: no --config, no $%s and no configs/scorer.yaml; scoring with the built-in defaults, the "
            "environment and flags only: pass --config FILE",
            CONFIG_ENV,
        )
    with serve_telemetry(settings) as observer_factory:
        return run_workers(settings, observer_factory)
