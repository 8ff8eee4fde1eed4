"""How every ``crm-scorer`` and ``crm-producer`` subcommand prints its ``--help``: plain text, each option's default
shown once (unless its help already names it, or there is none to show)."""

from __future__ import annotations

import argparse
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
        super().__init__(*args, **kwargs)
