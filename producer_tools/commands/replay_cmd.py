"""``crm-producer replay-dlq``: re-produce dead letters to the input topic, after the cause is fixed.

A dead letter carries the original key and value untouched (``schemas.dead_letter``), so replaying is
re-producing both; the ``dlq.*`` headers stay behind. The dead-letter topic is read from the beginning by a
fresh reader that commits nothing, so a replay can be previewed (``--dry-run``) and repeated.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from consumer.exit_codes import exit_code_of
from producer_tools.commands.arguments import APPLICATIONS_TOPIC, add_bootstrap_argument, connect, require_broker
from producer_tools.publishing.publisher import publish_messages
from producer_tools.publishing.replay import plan_replay
from producer_tools.publishing.topics import read_all
from schemas.errors import CrmScorerError

DEFAULT_TOPIC = APPLICATIONS_TOPIC
DEFAULT_DLQ = f"{DEFAULT_TOPIC}.dlq"


def register(subparsers: Any) -> None:
    """Add the ``replay-dlq`` subcommand to ``crm-producer``."""
    parser = subparsers.add_parser(
        "replay-dlq",
        help="re-produce dead letters (original key and value) to the input topic",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    add_bootstrap_argument(parser)
    parser.add_argument("--from", dest="source", default=DEFAULT_DLQ, help=f"dead-letter topic (default {DEFAULT_DLQ})")
    parser.add_argument(
        "--to", dest="target", default=DEFAULT_TOPIC, help=f"topic to replay to (default {DEFAULT_TOPIC})"
    )
    parser.add_argument("--reason", action="append", default=[], help="replay only this dlq.reason (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="count what would be replayed, send nothing")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed for reading the dead letters")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Replay as the arguments say; print one line per reason on stdout. Exits 1 if a delivery failed."""
    try:
        connect(args)
        require_broker(args.bootstrap_servers, topics=[args.source])
        plan = plan_replay(read_all(args.bootstrap_servers, args.source, args.timeout), args.reason)
        if not args.dry_run and plan.messages:
            summary = publish_messages(args.bootstrap_servers, args.target, plan.messages)
            failed = summary.failed
        else:
            failed = 0
    except CrmScorerError as exc:
        print(f"crm-producer replay-dlq: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    verb = "would replay" if args.dry_run else "replayed"
    for reason, count in sorted(plan.per_reason.items()):
        print(f"{verb} reason={reason} count={count}")
    for reason, count in sorted(plan.skipped.items()):
        print(f"skipped reason={reason} count={count}")
    print(
        f"{verb} {len(plan.messages)} of {len(plan.messages) + plan.skipped.total()} to {args.target} failed={failed}"
    )
    return 1 if failed else 0
