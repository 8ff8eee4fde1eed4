"""The producing core shared by ``crm-producer produce``, replay, the demo, the benchmark and the tests.

Two layers: :func:`event_messages` turns events into the messages to send (pure: encoding, keys, live
timestamps, seeded poison) and :func:`publish_messages` sends any messages with an idempotent producer
(acks=all, linger, lz4), pacing them with a token bucket and counting broker acknowledgements in delivery
callbacks. :func:`publish_events` chains the two.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer

from producer_tools.publishing.connection import client_config
from producer_tools.publishing.poison import CATALOGUE, SCORED, Encoder, PoisonKind, poison_kinds
from producer_tools.publishing.progress import Pacer
from schemas import ConfluentEncoder, SingleObjectEncoder, load_catalog
from schemas.catalog import APPLICATION_EVENT, SchemaCatalog
from schemas.errors import ConfigError
from schemas.framing import Framing
from schemas.registry import RegistrySchemaSource, value_subject

SCHEMA_CHOICES = ("v1", "v2", "mixed")
_QUEUE_FULL_WAIT = 0.05


class Progress(Protocol):
    """What the publisher reports progress to (``producer_tools.publishing.progress.ProgressBar``, or a fake)."""

    def update(self, done: int, failed: int = 0) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class OutboundMessage:
    """One message to send. ``event_id`` is set when the scorer can read the event inside; ``poison`` names
    the poison kind, None for a valid event."""

    key: bytes | None
    value: bytes | None
    event_id: str | None = None
    poison: str | None = None


@dataclass
class PublishSummary:
    """What the broker acknowledged: valid events (``sent``, ``event_ids``) and poison (``bad``, ``poison``)."""

    sent: int = 0
    failed: int = 0
    bad: int = 0
    seconds: float = 0.0
    event_ids: list[str] = field(default_factory=list)
    poison: Counter[str] = field(default_factory=Counter)  # kind -> acknowledged count
    scored_poison_event_ids: list[str] = field(default_factory=list)  # poison the scorer must still score
    first_error: str | None = None  # the first delivery error, to say why messages failed
    interrupted: bool = False

    @property
    def events_per_s(self) -> float:
        return (self.sent + self.bad) / self.seconds if self.seconds > 0 else 0.0

    def expected_outcomes(self) -> Counter[str]:
        """How the acknowledged messages must end in the scorer: ``scored`` and each dead-letter reason."""
        outcomes: Counter[str] = Counter({SCORED: self.sent} if self.sent else {})
        for kind, count in self.poison.items():
            outcomes[CATALOGUE[kind].outcome] += count
        return outcomes

    def line(self) -> str:
        """The one-line summary: ``sent=N failed=F bad=B events/s=X``."""
        return f"sent={self.sent} failed={self.failed} bad={self.bad} events/s={self.events_per_s:.0f}"


def producer_config(bootstrap_servers: str, *, delivery_timeout_s: float = 30.0, **overrides: Any) -> dict[str, Any]:
    """The librdkafka settings of an idempotent, batching producer reaching ``bootstrap_servers`` (with its
    connection's properties when it is a ``Brokers``); ``overrides`` win."""
    return {
        **client_config(bootstrap_servers),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        # A message not acknowledged in this time counts as failed instead of hanging the run for 5 minutes.
        "message.timeout.ms": int(delivery_timeout_s * 1000),
        **overrides,
    }


def event_encoders(
    schema_version: str,
    framing: Framing = "single-object",
    *,
    topic: str | None = None,
    registry: RegistrySchemaSource | None = None,
    catalog: SchemaCatalog | None = None,
) -> list[Encoder]:
    """The writers to cycle through: one per schema version (``mixed`` alternates v1 and v2).

    Confluent framing registers each version under ``<topic>-value`` in ``registry``.

    Raises:
        ConfigError: an unknown schema version, or Confluent framing without a registry or topic; or the
            registry refused the schema.
        RegistryUnavailableError: the registry did not answer.
    """
    if schema_version not in SCHEMA_CHOICES:
        raise ConfigError(f"schema_version: unknown {schema_version!r}, expected one of {SCHEMA_CHOICES}")
    catalog = load_catalog() if catalog is None else catalog
    versions = ["v1", "v2"] if schema_version == "mixed" else [schema_version]
    schemas = [catalog.by_name_version(APPLICATION_EVENT, v) for v in versions]
    if framing == "single-object":
        return [SingleObjectEncoder(s) for s in schemas]
    if registry is None or topic is None:
        raise ConfigError("framing: Confluent framing needs a schema registry URL and a topic")
    return [ConfluentEncoder(registry.register_schema(value_subject(topic), s.schema_str), s) for s in schemas]


@functools.cache
def _mock_registry(url: str) -> RegistrySchemaSource:
    return RegistrySchemaSource.from_url(url)


def registry_for(url: str) -> RegistrySchemaSource:
    """The schema registry at ``url``. ``mock://NAME`` gives one in-process mock per name.

    confluent-kafka 2.16 gives every mock client its own empty store; sharing one per URL makes a mock URL
    behave like a real one: whoever asks for ``mock://x`` in this process sees what was registered there.
    """
    return _mock_registry(url) if url.startswith("mock://") else RegistrySchemaSource.from_url(url)


def live_clock() -> dt.datetime:
    """The wall clock in UTC, cut to the millisecond an Avro ``timestamp-millis`` keeps."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def event_messages(
    events: Iterable[Mapping[str, Any]],
    encoders: Sequence[Encoder],
    *,
    bad_ratio: float = 0.0,
    seed: int = 0,
    kinds: Sequence[PoisonKind] | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> Iterator[OutboundMessage]:
    """One message per event, keyed by ``application_id``, written by ``encoders`` in turn.

    Each event is replaced, with probability ``bad_ratio``, by a poison message made from it (the kind drawn
    from ``kinds``, default the whole catalogue, with a generator seeded by ``seed``). ``clock``, when given,
    stamps ``occurred_at`` at the moment each message is built (live timestamps).

    Raises:
        ValueError: ``bad_ratio`` outside 0..1, or no encoder.
        RecordEncodingError: an event does not fit its writer schema.
    """
    if not 0.0 <= bad_ratio <= 1.0:
        raise ValueError(f"bad_ratio: must be within 0..1, got {bad_ratio}")
    if not encoders:
        raise ValueError("encoders: at least one writer is needed")
    rng = random.Random(seed)
    choices = tuple(kinds) if kinds else poison_kinds()
    for event, encode in zip(events, itertools.cycle(encoders)):
        if clock is not None:
            event = {**event, "occurred_at": clock()}
        if bad_ratio and rng.random() < bad_ratio:
            poison = rng.choice(choices).make(event, encode, rng)
            yield OutboundMessage(poison.key, poison.value, poison.event_id, poison.kind)
        else:
            key = str(event["application_id"]).encode("utf-8")
            yield OutboundMessage(key, encode(event), str(event["event_id"]))


class _Tally:
    """Counts delivery reports into a PublishSummary; runs inside ``Producer.poll``/``flush``."""

    def __init__(self, summary: PublishSummary) -> None:
        self.summary = summary

    def delivered(self, message: OutboundMessage, error: KafkaError | None, _: Message) -> None:
        summary = self.summary
        if error is not None:
            summary.failed += 1
            summary.first_error = summary.first_error or str(error)
        elif message.poison is not None:
            summary.bad += 1
            summary.poison[message.poison] += 1
            if message.event_id is not None:
                summary.scored_poison_event_ids.append(message.event_id)
        else:
            summary.sent += 1
            if message.event_id is not None:
                summary.event_ids.append(message.event_id)

    @property
    def acknowledged(self) -> int:
        return self.summary.sent + self.summary.bad + self.summary.failed


def publish_messages(
    bootstrap_servers: str,
    topic: str,
    messages: Iterable[OutboundMessage],
    *,
    rate: float = 0.0,
    progress: Progress | None = None,
    config: Mapping[str, Any] | None = None,
    flush_timeout_s: float = 60.0,
) -> PublishSummary:
    """Send ``messages`` to ``topic``, at most ``rate`` per second (0: as fast as possible), and wait for
    every delivery report. Ctrl-C stops sending, flushes what was sent and marks the summary interrupted.

    Messages still unacknowledged after ``flush_timeout_s`` count as failed.

    Raises:
        RecordEncodingError: building a message failed (the messages sent before it are flushed first).
        ValueError: a negative rate.
    """
    pacer = Pacer(rate)
    producer = Producer(dict(config) if config is not None else producer_config(bootstrap_servers))
    tally = _Tally(PublishSummary())
    started = time.perf_counter()
    try:
        _send_all(producer, topic, messages, pacer, tally, progress)
    except KeyboardInterrupt:
        tally.summary.interrupted = True
    finally:
        unacknowledged = producer.flush(flush_timeout_s)
        tally.summary.failed += unacknowledged
        tally.summary.seconds = time.perf_counter() - started
        if progress is not None:
            progress.update(tally.acknowledged, tally.summary.failed)
            progress.close()
    return tally.summary


def _send_all(
    producer: Producer,
    topic: str,
    messages: Iterable[OutboundMessage],
    pacer: Pacer,
    tally: _Tally,
    progress: Progress | None,
) -> None:
    pending = iter(messages)
    while True:
        while (wait := pacer.wait_time()) > 0:
            producer.poll(wait)  # serves delivery reports while waiting for the next token
        # Built after the wait, so a live timestamp is the moment the message goes out.
        message = next(pending, None)
        if message is None:
            return
        on_delivery = functools.partial(tally.delivered, message)
        while True:
            try:
                producer.produce(topic, value=message.value, key=message.key, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(_QUEUE_FULL_WAIT)
        producer.poll(0)
        if progress is not None:
            progress.update(tally.acknowledged, tally.summary.failed)


def publish_events(
    bootstrap_servers: str,
    topic: str,
    events: Iterable[Mapping[str, Any]],
    *,
    encoders: Sequence[Encoder],
    rate: float = 0.0,
    bad_ratio: float = 0.0,
    seed: int = 0,
    kinds: Sequence[PoisonKind] | None = None,
    live_timestamps: bool = False,
    progress: Progress | None = None,
    config: Mapping[str, Any] | None = None,
) -> PublishSummary:
    """Encode ``events`` (mixing in poison at ``bad_ratio``) and send them to ``topic``; see
    :func:`event_messages` and :func:`publish_messages` for the details and what they raise."""
    messages = event_messages(
        events, encoders, bad_ratio=bad_ratio, seed=seed, kinds=kinds, clock=live_clock if live_timestamps else None
    )
    return publish_messages(bootstrap_servers, topic, messages, rate=rate, progress=progress, config=config)
