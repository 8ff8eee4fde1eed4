"""Before a command starts its work: do the brokers answer with these credentials, may it describe its topics?

One metadata request with the command's own connection properties tells an unreachable broker, a wrong
password and a topic its principal may not describe apart, each as one line naming the address or the topic
(never a credential), instead of librdkafka retrying the connection behind a command that seems to hang.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from schemas.errors import ConfigError, KafkaRefusedError, KafkaUnreachableError

DEFAULT_TIMEOUT_S = 10.0
_STEP_S = 0.5
_AUTH_FAILED = "SASL authentication error"
_CALLBACKS = ("logger", "error_cb", "stats_cb", "throttle_cb", "on_commit", "oauth_cb")
_REFUSED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED)


class _LastLine(logging.Handler):
    """Keeps librdkafka's last log line (why it cannot connect) instead of letting it print each retry."""

    def __init__(self) -> None:
        super().__init__()
        self.line: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.line = record.getMessage()


def require_kafka(
    conf: dict[str, Any],
    topics: Iterable[str] = (),
    timeout_s: float = DEFAULT_TIMEOUT_S,
    hint: str = "kafka.bootstrap_servers, the credentials and that the broker runs",
) -> None:
    """Return once a broker answers a metadata request made with ``conf`` and every topic of ``topics`` that
    exists may be described. Refused credentials end the wait at once; an unreachable broker after
    ``timeout_s``.

    Raises:
        ConfigError: no client can be made of ``conf``, no broker answered, the credentials were refused, or the
            principal may not describe one of ``topics``: one line naming the address or the topic and ``hint``
            (what to check).
    """
    heard = _LastLine()
    logger = logging.Logger("librdkafka")  # not registered: the connect retries stay out of the user's terminal
    logger.addHandler(heard)
    where = conf.get("bootstrap.servers", "?")
    try:
        # a metadata request naming a missing topic must not create it (with broker defaults, on a broker that
        # auto-creates): the scores topic has to be co-partitioned with the outcomes
        checks = {"logger": logger, "allow.auto.create.topics": False}
        admin = AdminClient({k: v for k, v in conf.items() if k not in _CALLBACKS} | checks)
    except KafkaException as exc:  # a certificate or key file librdkafka cannot load, a bad property
        raise ConfigError(f"cannot make a Kafka client for {where}: {reason(None, exc)}") from exc
    _await_metadata(admin, heard, where, timeout_s, hint)
    for topic in topics:
        try:
            metadata = admin.list_topics(topic=topic, timeout=timeout_s).topics.get(topic)
        except KafkaException as exc:
            raise ConfigError(f"Kafka at {where}: no metadata for topic {topic}: {reason(None, exc)}") from exc
        error = metadata.error if metadata is not None else None
        if error is not None and error.code() in _REFUSED:
            raise KafkaRefusedError(
                f"Kafka at {where} refused to describe topic {topic}: {error.str()} (grant the ACLs "
                "`crm-scorer acls` prints for this command)"
            )


def _await_metadata(admin: AdminClient, heard: _LastLine, where: str, timeout_s: float, hint: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.list_topics(timeout=max(0.1, min(_STEP_S, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            admin.poll(0)  # serves the queued log lines to ``heard``
            if heard.line is not None and _AUTH_FAILED in heard.line:  # no retry mends a wrong password
                raise KafkaUnreachableError(
                    f"Kafka at {where} refused the credentials ({reason(heard.line, exc)}): check {hint}"
                ) from exc
            if time.monotonic() >= deadline:
                raise KafkaUnreachableError(
                    f"no Kafka broker answered at {where} within {timeout_s:.0f} s ({reason(heard.line, exc)}): "
                    f"check {hint}"
                ) from exc


def reason(line: str | None, exc: KafkaException) -> str:
    """librdkafka's last word on why it could not connect, without its thread and state decorations."""
    if line is None:
        return str(exc.args[0].str()) if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
    # "FAIL [rdkafka#producer-1] [thrd:...]: 127.0.0.1:1/bootstrap: Connect to ... failed: Connection refused (...)"
    detail = line.rsplit("]: ", 1)[-1].split(": ", 1)[-1]
    return re.sub(r"\s*\(after \d+ms in state \w+\)$", "", detail)
