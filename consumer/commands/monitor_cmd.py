"""``crm-scorer monitor``: join outcomes with scores and export realised model quality (its own consumer group).

Every flag is also a configs/monitor.yaml key and a ``CRM_MONITOR_*`` variable. ``--connection FILE`` reads the
``kafka`` and ``schema_registry`` sections of a connection file (the scorer's scorer.yaml works) over monitor.yaml,
as every ``crm-producer`` command reads its ``--config``. Before it joins its group the monitor checks that the
brokers answer with its credentials and that it may describe its topics: a wrong password, an unreachable broker
or a missing ACL ends it with one line. Ends with a summary line (``joined=N ...``) when it stops: SIGTERM/SIGINT,
or ``--until-idle`` seconds without a message.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from consumer.cli_style import add_idle_timeout, add_log_options
from consumer.commands.check_cmd import add_check_options, run_monitor_check
from consumer.monitor.loop import run_monitor
from consumer.monitor.settings import load_monitor_settings
from consumer.reachability import require_kafka


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "monitor", help="join outcomes with scores: realised AUC, Brier, calibration, concept drift"
    )
    add = parser.add_argument
    add("--config", type=Path, default=None, help="monitor.yaml (default: configs/monitor.yaml)")
    add("--connection", type=Path, default=None, help="a connection file: its kafka and schema_registry sections")
    add("--bootstrap-servers", help="kafka.bootstrap_servers")
    add("--schema-registry-url", help="schema_registry.url: scores in Confluent framing are read through it")
    add("--group-id", help="kafka.group_id")
    add("--scores-topic", help="topics.scores")
    add("--outcomes-topic", help="topics.outcomes")
    add("--applications-topic", help="topics.applications: read the events too, so captured rows carry them")
    add("--store-path", type=Path, help="store.path: the local RocksDB state store")
    add("--metrics-port", type=int, help="metrics_port (0 = pick a free port)")
    add("--capture-dir", type=Path, help="capture_dir: append joined rows to Parquet here")
    add_idle_timeout(parser, "--until-idle", "until_idle", None, "stop after this many seconds without a message")
    add_log_options(parser)
    add("--check", action="store_true", help="check the deployment (crm-scorer check, the monitor's needs) and exit")
    add_check_options(parser)
    parser.set_defaults(handler=run)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags as nested settings (None = not given, so the file and environment still apply)."""
    return {
        "kafka": {"bootstrap_servers": args.bootstrap_servers, "group_id": args.group_id},
        "schema_registry": {"url": args.schema_registry_url},
        "topics": {
            "scores": args.scores_topic,
            "outcomes": args.outcomes_topic,
            "applications": args.applications_topic,
        },
        "store": {"path": args.store_path},
        "metrics_port": args.metrics_port,
        "capture_dir": args.capture_dir,
    }


def run(args: argparse.Namespace) -> int:
    if args.check:
        return run_monitor_check(args, lambda: load_monitor_settings(args.config, args.connection, **overrides(args)))
    settings = load_monitor_settings(args.config, args.connection, **overrides(args))
    t = settings.topics
    hint = "--bootstrap-servers / --connection / kafka.* (CRM_MONITOR_KAFKA__*) and that the broker runs"
    require_kafka(
        settings.librdkafka(), [topic for topic in (t.scores, t.outcomes, t.applications) if topic], hint=hint
    )
    summary = run_monitor(settings, until_idle_s=args.until_idle)
    print(summary, flush=True)
    return 0
