"""How every ``crm-scorer`` and ``crm-producer`` subcommand prints its ``--help``: plain text, each option's default
shown once (unless its help already names it, or there is none to show)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


class DefaultsShown(argparse.HelpFormatter):
    """``argparse.ArgumentDefaultsHelpFormatter`` without ``(default: None)`` and without a second default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and "default" not in text
        if shown and action.option_strings:
            text += " (default: %(default)s)"
        return text


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: ``DefaultsShown`` unless the command chose its own formatter."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsShown)
        if kwargs.get("description"):  # a module docstring: its RST quotes and escaped percent signs as plain text
            kwargs["description"] = kwargs["description"].replace("``", "").replace("%%", "%")
        super().__init__(*args, **kwargs)


def add_log_options(parser: argparse.ArgumentParser, configure: bool = True) -> None:
    """``--log-level`` and ``--log-json``, the same on every long-running command. With ``configure`` the CLI's
    ``main`` sets the logging up from them (``run`` passes them to its settings instead: its workers log)."""
    level = "INFO" if configure else None  # None: run's log.level from the file or environment still applies
    parser.add_argument(
        "--log-level", default=level, choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="the least level logged"
    )
    parser.add_argument(
        "--log-json", action="store_const", const=True, default=None, help="one JSON object per log line"
    )
    parser.set_defaults(configure_logs=configure)


def configure_logs(args: argparse.Namespace) -> None:
    """Set the logging up from ``--log-level`` / ``--log-json`` when the command asked for it."""
    if getattr(args, "configure_logs", False):
        from consumer.telemetry.logs import configure_logging

        configure_logging(args.log_level, bool(args.log_json))


IDLE_FLAG = "--idle-timeout"


class _DeprecatedSpelling(argparse.Action):
    """Stores the value; an option string other than the first is an old spelling, said on stderr."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: Any = None
    ) -> None:
        if option is not None and option != self.option_strings[0]:
            print(f"{parser.prog}: {option} is deprecated, use {self.option_strings[0]}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_idle_timeout(parser: argparse.ArgumentParser, old: str, dest: str, default: float | None, help: str) -> None:
    """``--idle-timeout SECONDS``: stop after this long with nothing new, the one name of every command that
    reads until idle; ``old`` (the command's former spelling) is kept as a deprecated alias for one release."""
    parser.add_argument(
        IDLE_FLAG,
        old,
        dest=dest,
        type=float,
        default=default,
        action=_DeprecatedSpelling,
        help=f"{help} ({old} is a deprecated alias)",
    )
