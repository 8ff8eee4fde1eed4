"""``crm-producer produce``: Avro-encode synthetic (or JSONL) events and publish them, keyed by application id.

Prints a progress bar on stderr when it is a terminal and ends with ``sent=N failed=F bad=B events/s=X``.
Exits 1 when any message was not delivered, 2 on a usage, broker or input error, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from producer_tools.broker import BOOTSTRAP_ENV, BrokerError
from producer_tools.poison import CATALOGUE, poison_kinds
from producer_tools.progress import ProgressBar
from producer_tools.publisher import SCHEMA_CHOICES, event_encoders, producer_config, publish_events, registry_for
from producer_tools.topics import ensure_topics
from producer_tools.world import DEFAULT_START, SCENARIOS, generate
from schemas import FRAMINGS, load_catalog
from schemas.errors import CrmScorerError, EventValidationError
from schemas.json_view import from_json_view

DEFAULT_TOPIC = "crm.applications"
DEFAULT_COUNT = 1000
# How long a command waits for a broker to answer before it says so and exits: a broker that is up answers a
# metadata request in milliseconds; librdkafka alone would retry the connection until each message times out.
BROKER_ANSWER_S = 5.0


def register(subparsers: Any) -> None:
    """Add the ``produce`` subcommand to ``crm-producer``."""
    parser = subparsers.add_parser(
        "produce",
        help="publish Avro application events (synthetic or from a JSONL file), optionally with poison",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    _add_sending_arguments(parser)
    _add_source_arguments(parser)
    parser.set_defaults(handler=run)


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--count", type=_non_negative(int), default=None, help="messages (world: default 1000; a file: at most)")
    add("--seed", type=int, default=42, help="world and poison seed: same seed, same messages")
    add("--scenario", choices=SCENARIOS, default="baseline")
    add("--from-file", type=Path, default=None, help="JSONL events in the JSON view (as `generate` writes them)")
    add("--bad-ratio", type=_ratio, default=0.0, help="share of messages replaced by poison (0..1)")
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
    add("--rate", type=_non_negative(float), default=0.0, help="events per second; 0 = as fast as possible")
    add("--schema-version", choices=SCHEMA_CHOICES, default="v1", help="writer schema; mixed alternates v1 and v2")
    add("--framing", choices=FRAMINGS, default="single-object")
    add("--schema-registry-url", default=None, help="for Confluent framing; mock://NAME is an in-process mock")
    add("--delivery-timeout", type=_non_negative(float), default=30.0, help="seconds until an unacked message fails")


def add_bootstrap_argument(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap-servers``, defaulting to ``KAFKA_BOOTSTRAP_SERVERS`` (what ``crm-producer broker`` prints)."""
    default = os.environ.get(BOOTSTRAP_ENV, "").strip() or None
    parser.add_argument(
        "--bootstrap-servers",
        default=default,
        required=default is None,
        help=f"HOST:PORT[,...] (default ${BOOTSTRAP_ENV})",
    )


class _LastLine(logging.Handler):
    """Keeps librdkafka's last log line (why it cannot connect) instead of letting it print each retry."""

    def __init__(self) -> None:
        super().__init__()
        self.line: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.line = record.getMessage()


def require_broker(bootstrap_servers: str, timeout_s: float | None = None) -> None:
    """Return once a broker at ``bootstrap_servers`` answers a metadata request.

    Raises:
        BrokerError: none answered within ``timeout_s`` (default ``BROKER_ANSWER_S``); one line naming the
            address, librdkafka's reason and what to check.
    """
    timeout_s = BROKER_ANSWER_S if timeout_s is None else timeout_s
    heard = _LastLine()
    logger = logging.Logger("librdkafka")  # not registered: the connect retries stay out of the user's terminal
    logger.addHandler(heard)
    config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, "logger": logger}
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        admin.poll(0)  # serves the queued log lines to ``heard``
        raise BrokerError(
            f"no Kafka broker answered at {bootstrap_servers} within {timeout_s:.0f} s ({_reason(heard.line, exc)}): "
            f"check --bootstrap-servers / ${BOOTSTRAP_ENV} and that the broker runs (`crm-producer broker` starts one)"
        ) from exc


def _reason(line: str | None, exc: KafkaException) -> str:
    if line is None:
        return str(exc.args[0].str()) if exc.args else str(exc)
    # "FAIL [rdkafka#producer-1] [thrd:...]: 127.0.0.1:1/bootstrap: Connect to ... failed: Connection refused (...)"
    detail = line.rsplit("]: ", 1)[-1].split(": ", 1)[-1]
    return re.sub(r"\s*\(after \d+ms in state \w+\)$", "", detail)


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
        require_broker(args.bootstrap_servers)
        if args.partitions:
            ensure_topics(args.bootstrap_servers, {args.topic: args.partitions})
        registry = registry_for(args.schema_registry_url) if args.schema_registry_url else None
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
        return 2
    print(summary.line(), flush=True)
    if summary.first_error:
        print(f"first delivery error: {summary.first_error}", file=sys.stderr)
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0


def _events(args: argparse.Namespace, live: bool) -> tuple[Iterator[dict[str, Any]], int | None]:
    """The events to publish and how many there will be (None when unknown).

    With live timestamps the world starts now: ages and tenures are measured against the event time, so
    stamping today's time on events drawn for another date would shift them (and show up as drift).
    """
    if args.from_file is not None:
        return read_events(args.from_file, args.count), args.count
    count = DEFAULT_COUNT if args.count is None else args.count
    # mixed draws v2 events: the v1 writer simply leaves the two v2 fields out.
    version = "v2" if args.schema_version == "mixed" else args.schema_version
    start = dt.datetime.now(dt.UTC) if live else DEFAULT_START
    batch = generate(count, args.seed, scenario=args.scenario, schema_version=version, start=start)
    return iter(batch.events), count


def read_events(path: Path, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Avro-native events from a JSONL file in the JSON view, lazily; blank lines are skipped.

    Raises:
        EventValidationError: a line is not JSON or its dates do not parse; the message names the line.
        OSError: the file cannot be read.
    """
    schema = load_catalog().application_event_latest.parsed
    with path.open(encoding="utf-8") as lines:
        taken = 0
        for number, line in enumerate(lines, start=1):
            if limit is not None and taken >= limit:
                return
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                obj.pop("truth", None)  # `generate --labels` adds the ground truth; it is not part of the event
                event = from_json_view(obj, schema)
            except (json.JSONDecodeError, AttributeError, EventValidationError) as exc:
                raise EventValidationError(f"{path.name} line {number}: {exc}") from exc
            taken += 1
            yield event


def _non_negative(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value

    return parse


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value
