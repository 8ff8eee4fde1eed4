"""``crm-producer``: everything that puts events on a topic or reads them back.

Each subcommand lives in its own module that exposes ``register(subparsers)``; this module only wires them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import version

from confluent_kafka import KafkaError, KafkaException

from consumer.cli_style import CommandParser, configure_logs
from producer_tools.servers.broker import BOOTSTRAP_ENV

# Modules that contribute subcommands, in the order `--help` lists them.
_COMMAND_MODULES = [
    "producer_tools.commands.generate_cmd",
    "producer_tools.commands.broker_cmd",
    "producer_tools.commands.produce_cmd",
    "producer_tools.commands.replay_cmd",
    "producer_tools.commands.tail_cmd",
    "producer_tools.commands.outcomes_cmd",
    "producer_tools.commands.outcomes_demo_cmd",
    "producer_tools.commands.lifecycle_demo_cmd",
    "producer_tools.commands.demo_cmd",
    "producer_tools.commands.stack_cmd",
    "producer_tools.commands.rebalance_probe_cmd",
    "producer_tools.commands.selection_report_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-producer", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('crm-scorer')}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logs(args)
    try:
        return int(args.handler(args) or 0)
    except KafkaException as exc:  # a broker call no command foresaw failing: one line rather than a traceback
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        print(
            f"crm-producer {args.command}: Kafka: {error.str() if error is not None else exc}: "
            f"check --bootstrap-servers / ${BOOTSTRAP_ENV} and that the broker runs",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
