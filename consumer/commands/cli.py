"""``crm-scorer``: the streaming scorer (``run``), the same engine over a file (``score``), and ``bench``."""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

from consumer.cli_style import CommandParser, configure_logs
from consumer.exit_codes import BAD_INPUT, PUBLISH_FAILED, REGISTRY_UNAVAILABLE, exit_code_of
from consumer.kafka.delivery import PublishError
from schemas.errors import (
    ArtifactError,
    ConfigError,
    RegistryUnavailableError,
)

# Modules that contribute subcommands through ``register(subparsers)``.
_COMMAND_MODULES = [
    "consumer.commands.run_cmd",
    "consumer.commands.score_cmd",
    "consumer.commands.bench_cmd",
    "consumer.commands.reasons_cmd",
    "consumer.commands.config_reference",
    "consumer.commands.monitor_cmd",
    "consumer.commands.acls_cmd",
    "consumer.commands.gateway_cmd",
    "consumer.commands.models_cmd",
    "consumer.commands.check_schema_cmd",
    "consumer.commands.check_cmd",
    "consumer.commands.schemas_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-scorer", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('crm-scorer')}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for register in _plugin_commands():
        register(subparsers)
    return parser


# Other installed packages may add subcommands (``register(subparsers)``) under this entry-point group: the
# tools contribute ``bench``, which drives the service from outside, without the service importing them.
PLUGIN_GROUP = "crm_scorer.commands"


def _plugin_commands() -> list[Any]:
    registers = []
    for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            registers.append(entry.load())
        except ImportError:  # a plugin whose own dependencies are missing: the service's commands still work
            continue
    return registers


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logs(args)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, ArtifactError) as exc:  # an unreachable broker 5, a refusal 7, the rest 2
        print(f"crm-scorer: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    except PublishError as exc:  # a delivery no retry can mend (a missing topic): already logged by the loop
        print(f"crm-scorer: {exc}", file=sys.stderr)
        return PUBLISH_FAILED
    except RegistryUnavailableError as exc:  # at start (registering the result schema): let the supervisor retry
        print(f"crm-scorer: {exc}; exiting so the supervisor restarts the scorer", file=sys.stderr)
        return REGISTRY_UNAVAILABLE
    except OSError as exc:
        # A file named on the command line (score --in/--out) that cannot be opened: one line naming it. If the
        # offline command comes to translate this itself (ConfigError naming the flag), the branch above says it.
        if exc.filename is None:
            raise
        where = "" if Path(exc.filename).is_absolute() else f" (relative to {Path.cwd()})"
        print(
            f"crm-scorer {args.command}: cannot open {exc.filename}{where}: {exc.strerror}; "
            "check the path and its permissions",
            file=sys.stderr,
        )
        return BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
