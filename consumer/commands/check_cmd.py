"""``crm-scorer check``: is this deployment ready to take traffic? One line per check, ``ok`` or ``FAIL``.

Settings valid, the model set verified (sha256) and loaded, every reason with a code, the brokers reachable with
the configured security, the ACLs the mode needs granted (those ``crm-scorer acls`` prints, read back with the
Admin API's describe_acls), the topics present and co-partitioned, the registry answering with the subject's
compatibility. Exits with the code of the first failing check (docs/exit-codes.md). ``crm-scorer monitor --check``
runs the monitor's plan.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from consumer.commands.config_reference import show
from consumer.layering import load_connection
from consumer.preflight.checks import settings_check
from consumer.preflight.kafka_checks import AdminBrokers
from consumer.preflight.plan import Plan, monitor_plan, scorer_plan
from consumer.preflight.run import checks, report
from consumer.settings import load_settings

DEFAULT_TIMEOUT_S = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check a deployment before it takes traffic: one line per check, exit code of the first failure",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=None, help="scorer.yaml (unset: configs/scorer.yaml)")
    add_check_options(parser)
    parser.add_argument(
        "--outcomes-topic", default=None, help="an outcomes topic that must be co-partitioned with the results"
    )
    parser.set_defaults(handler=run)


def add_check_options(parser: argparse.ArgumentParser) -> None:
    """The options ``check`` and ``monitor --check`` share."""
    parser.add_argument("--principal", default=None, help="whose ACLs to check (unset: User:<kafka.sasl_username>)")
    parser.add_argument(
        "--acl-connection",
        type=Path,
        default=None,
        help="a connection file (kafka section) of a principal allowed to describe ACLs; unset: the command's own",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for a broker")
    parser.add_argument("--print-config", action="store_true", help="print the settings first, secrets masked")


def run(args: argparse.Namespace) -> int:
    if args.print_config:
        show(argparse.Namespace(config=args.config, monitor=False, connection=None))
    first, settings = settings_check(lambda: load_settings(args.config))
    if settings is None:
        return report([first])
    return execute(first, scorer_plan(settings, args.principal, args.outcomes_topic), args)


def execute(first: Any, plan: Plan, args: argparse.Namespace) -> int:
    """Run ``plan``'s checks after the settings' line ``first``; the exit code."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from models.artifacts import load_models

    acl_conf = None
    if args.acl_connection is not None:
        acl_conf = load_connection(args.acl_connection).kafka.librdkafka()
    brokers = AdminBrokers(plan.conf, acl_conf, args.timeout)
    return report([first, *checks(plan, brokers, load_models, SchemaRegistryClient)])


def run_monitor_check(args: argparse.Namespace, load: Any) -> int:
    """``crm-scorer monitor --check``: the monitor's plan, its settings read by ``load``."""
    if args.print_config:
        show(argparse.Namespace(config=args.config, monitor=True, connection=args.connection))
    first, settings = settings_check(load)
    if settings is None:
        return report([first])
    return execute(first, monitor_plan(settings, args.principal), args)
