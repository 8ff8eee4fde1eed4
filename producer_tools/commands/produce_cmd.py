"""``crm-producer produce``: Avro-encode synthetic (or JSONL) events and publish them, keyed by application id.

Prints a progress bar on stderr when it is a terminal and ends with ``sent=N failed=F bad=B events/s=X``.
Exits 1 when any message was not delivered, 2 on a usage, broker or input error, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from consumer.cli_style import add_log_options
from consumer.exit_codes import exit_code_of
from producer_tools.commands.arguments import (
    APPLICATIONS_TOPIC,
    DEFAULT_COUNT,
    add_bootstrap_argument,
    connect,
    non_negative,
    ratio,
    registry_of,
    require_broker,
)
from producer_tools.publishing.poison import CATALOGUE, poison_kinds
from producer_tools.publishing.progress import ProgressBar
from producer_tools.publishing.publisher import (
    SCHEMA_CHOICES,
    event_encoders,
    producer_config,
    publish_events,
)
from producer_tools.publishing.sources import read_events, world_events
from producer_tools.publishing.topics import ensure_topics
from producer_tools.world import SCENARIOS
from schemas import FRAMINGS
from schemas.errors import CrmScorerError

DEFAULT_TOPIC = APPLICATIONS_TOPIC


def register(subparsers: Any) -> None:
    """Add the ``produce`` subcommand to ``crm-producer``."""
    parser = subparsers.add_parser(
        "produce",
        help="publish Avro application events (synthetic or from a JSONL file), optionally with poison",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    _add_sending_arguments(parser)
    _add_source_arguments(parser)
    add_log_options(parser)
    parser.set_defaults(handler=run)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--count", type=non_negative(int), default=None, help="messages (world: default 1000; a file: at most)")
    add("--seed", type=int, default=42, help="world and poison seed: same seed, same messages")
    add("--scenario", choices=SCENARIOS, default="baseline", help="the world's scenario")
    add("--from-file", type=Path, default=None, help="JSONL events in the JSON view (as `generate` writes them)")
    add("--bad-ratio", type=ratio, default=0.0, help="share of messages replaced by poison (0..1)")
    add(
        "--poison-kinds", default=None, help=f"comma-separated kinds to draw from (default all: {', '.join(CATALOGUE)})"
    )
    add(
        "--live-timestamps",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stamp occurred_at with the wall clock at send time (default: on when --rate > 0)",
    )


def _add_sending_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add_bootstrap_argument(parser)
    add("--topic", default=DEFAULT_TOPIC, help=f"target topic (default {DEFAULT_TOPIC})")
    add("--partitions", type=int, default=None, help="create the topic with this many partitions if it is missing")
    add("--rate", type=non_negative(float), default=0.0, help="events per second; 0 = as fast as possible")
    add("--schema-version", choices=SCHEMA_CHOICES, default="v1", help="writer schema; mixed alternates v1 and v2")
    add("--framing", choices=FRAMINGS, default="single-object", help="how each value is framed")
    add(
        "--schema-registry-url",
        default=None,
        help="for Confluent framing, over the connection file's; mock://NAME is an in-process mock",
    )
    add("--delivery-timeout", type=non_negative(float), default=30.0, help="seconds until an unacked message fails")


def run(args: argparse.Namespace) -> int:
    """Publish as the arguments say; print the summary line on stdout."""
    live = args.live_timestamps if args.live_timestamps is not None else args.rate > 0
    try:
        if args.from_file is not None and not args.from_file.is_file():
            raise FileNotFoundError(
                f"--from-file {args.from_file}: no such file (relative to {Path.cwd()}); "
                "`crm-producer generate --out FILE` writes one"
            )
        kinds = poison_kinds(args.poison_kinds)
        connect(args)
        require_broker(args.bootstrap_servers)
        if args.partitions:
            ensure_topics(args.bootstrap_servers, {args.topic: args.partitions})
        registry = registry_of(args)
        encoders = event_encoders(args.schema_version, args.framing, topic=args.topic, registry=registry)
        events, total = _events(args, live)
        summary = publish_events(
            args.bootstrap_servers,
            args.topic,
            events,
            encoders=encoders,
            rate=args.rate,
            bad_ratio=args.bad_ratio,
            seed=args.seed,
            kinds=kinds,
            live_timestamps=live,
            progress=ProgressBar(total),
            config=producer_config(args.bootstrap_servers, delivery_timeout_s=args.delivery_timeout),
        )
    except (CrmScorerError, KeyError, OSError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # KeyError's str() is a repr
        print(f"crm-producer produce: {message}", file=sys.stderr)
        return exit_code_of(exc)
    print(summary.line(), flush=True)
    if summary.first_error:
        print(f"first delivery error: {summary.first_error}", file=sys.stderr)
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0


def _events(args: argparse.Namespace, live: bool) -> tuple[Iterator[dict[str, Any]], int | None]:
    """The events to publish and how many there will be (None when unknown)."""
    if args.from_file is not None:
        return read_events(args.from_file, args.count), args.count
    count = DEFAULT_COUNT if args.count is None else args.count
    return world_events(count, args.seed, args.scenario, args.schema_version, live), count
