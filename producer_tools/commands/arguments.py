"""What several ``crm-producer`` commands share: the broker address argument, the broker check, value parsers."""

from __future__ import annotations

import argparse
import logging
import os
import re
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from producer_tools.errors import BrokerError
from producer_tools.servers.broker import BOOTSTRAP_ENV

# The topics' defaults (configs/scorer.yaml's) and the world's default size, shared by the commands.
APPLICATIONS_TOPIC = "crm.applications"
SCORES_TOPIC = "crm.scores"
OUTCOMES_TOPIC = "crm.outcomes"
DEFAULT_COUNT = 1000
# How long a command waits for a broker to answer before it says so and exits: a broker that is up answers a
# metadata request in milliseconds; librdkafka alone would retry the connection until each message times out.
BROKER_ANSWER_S = 5.0


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


def non_negative(kind: type[int] | type[float]) -> Any:
    """An argparse type: ``kind`` of the text, refused when below zero."""

    def parse(text: str) -> int | float:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value

    return parse


def ratio(text: str) -> float:
    """An argparse type: a float within 0..1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0..1, got {text}")
    return value
