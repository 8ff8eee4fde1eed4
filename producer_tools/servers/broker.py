"""Which broker the demo, the tests and the bench run on, and the interface every broker gives them.

Three kinds, one interface (a context manager with ``bootstrap_servers``; the local ones also pause, resume and
stop):

- ``kafka``: Apache Kafka from its Maven Central jars (:mod:`producer_tools.servers.apache_kafka`), the broker the
  integration suite, the fault suite and the benchmarks run on; it needs ``java`` and ``mvn``.
- ``tansu``: the zero-Java embedded broker (:mod:`producer_tools.servers.tansu`), the default of ``make demo``.
- an external cluster, when ``KAFKA_BOOTSTRAP_SERVERS`` is set: entering and leaving it does nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

from producer_tools.servers.apache_kafka import ApacheKafka
from producer_tools.servers.kafka_jars import kafka_unavailable_reason
from producer_tools.servers.process import BrokerError, free_port, port_is_free
from producer_tools.servers.tansu import INSTALL_HINT, TansuBroker, answers_metadata

__all__ = [
    "BOOTSTRAP_ENV",
    "BROKER_ENV",
    "INSTALL_HINT",
    "ApacheKafka",
    "Broker",
    "BrokerError",
    "BrokerKind",
    "ExternalBroker",
    "LocalBroker",
    "TansuBroker",
    "answers_metadata",
    "broker_from_env",
    "free_port",
    "kafka_unavailable_reason",
    "port_is_free",
    "resolve_kind",
]

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
BROKER_ENV = "CRM_BROKER"
BrokerKind = Literal["kafka", "tansu"]
LocalBroker = ApacheKafka | TansuBroker  # the brokers this machine runs, which can be paused and stopped
KINDS: tuple[BrokerKind, ...] = ("kafka", "tansu")


class Broker(Protocol):
    """What callers need from a broker: where to connect, what it is, and a context that keeps it up."""

    @property
    def kind(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def settings(self) -> dict[str, str]: ...

    def __enter__(self) -> Broker: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@dataclass(frozen=True)
class ExternalBroker:
    """A cluster someone else runs; entering and leaving it does nothing."""

    bootstrap_servers: str
    kind: str = "external"
    version: str = "unknown"
    settings: dict[str, str] = field(default_factory=dict)

    def __enter__(self) -> ExternalBroker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


def resolve_kind(requested: str | None, default: BrokerKind, environ: Mapping[str, str] | None = None) -> BrokerKind:
    """The broker kind to start: ``requested``, else ``$CRM_BROKER``, else ``default``.

    Raises:
        BrokerError: the kind is not ``kafka`` or ``tansu``.
    """
    env = os.environ if environ is None else environ
    kind = (requested or env.get(BROKER_ENV, "").strip() or default).lower()
    if kind not in KINDS:
        raise BrokerError(f"{BROKER_ENV}={kind!r}: the local broker is one of {', '.join(KINDS)}")
    return kind


def broker_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    kind: str | None = None,
    default: BrokerKind = "tansu",
    port: int | None = None,
    log_path: Path | None = None,
) -> Broker:
    """The external cluster named by ``KAFKA_BOOTSTRAP_SERVERS``, else a (not yet started) local broker of
    ``kind`` (else ``$CRM_BROKER``, else ``default``).

    Use it as a context manager: ``with broker_from_env() as broker: broker.bootstrap_servers``.
    ``port`` and ``log_path`` apply to Tansu only (Apache Kafka picks its ports and keeps its logs per node).
    """
    env = os.environ if environ is None else environ
    external = env.get(BOOTSTRAP_ENV, "").strip()
    if external:
        return ExternalBroker(external)
    if resolve_kind(kind, default, env) == "kafka":
        return ApacheKafka()
    return TansuBroker(port, log_path=log_path)
