"""``crm-scorer``: the streaming scorer (``run``), the same engine over a file (``score``), and ``bench``."""

from __future__ import annotations

import argparse
import importlib
import sys

from schemas.errors import ArtifactError, ConfigError

# Modules that contribute subcommands through ``register(subparsers)``.
_COMMAND_MODULES = [
    "consumer.run_cmd",
    "consumer.score_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-scorer", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, ArtifactError) as exc:
        print(f"crm-scorer: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
