"""The local view of the scores and dead-letter topics: a thread that reads both into the ``TaskStore``.

It assigns itself every partition of both topics (no group membership, nothing committed to Kafka): each
starts at the offset the store holds, or at the beginning for a store that holds none (a new or lost folder
is rebuilt from the topics). Results are keyed by the ``application_hash`` they carry, so a form scored for
any CRM answers at once; dead letters by their key, the task id the gateway gave the event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from consumer.connection import KafkaConnection
from consumer.gateway.results import dead_letter_record, result_record, task_of_key
from consumer.gateway.store import TaskStore, ViewBatch
from schemas.dead_letter import DeadLetterInfo
from schemas.errors import InvalidEventError

log = logging.getLogger(__name__)
BATCH = 500


def view_consumer_config(connection: KafkaConnection, group_id: str) -> dict[str, Any]:
    """The shared connection (broker, credentials, TLS), for a consumer that assigns itself and commits nothing."""
    owned = {
        "client.id": ("kafka.client_id", f"{connection.client_id or 'crm-scorer'}-gateway-view"),
        "group.id": ("view_group_id", group_id),
        "enable.auto.commit": ("the view's offsets are in its store", False),
        "enable.auto.offset.store": ("the view's offsets are in its store", False),
        "auto.offset.reset": ("a view with no offsets reads the topics whole", "earliest"),
        # an aborted exactly_once transaction's results were never scores
        "isolation.level": ("the scorer's exactly_once", "read_committed"),
    }
    return connection.librdkafka({"fetch.wait.max.ms": 10, "reconnect.backoff.max.ms": 10_000}, owned=owned)


class ScoresView:
    """Reads ``scores_topic`` and ``dlq_topic`` into ``store`` until ``close``. ``decode`` decodes a result;
    ``on_batch`` hears of each poll: the batch, how many records it skipped, and the accepted tasks it answered."""

    def __init__(
        self,
        conf: dict[str, Any],
        topics: tuple[str, str],
        store: TaskStore,
        decode: Callable[[bytes], dict[str, Any]],
        on_batch: Callable[[ViewBatch, int, dict[str, int]], None] = lambda batch, skipped, answered: None,
    ) -> None:
        self._conf = conf
        self._scores, self._dlq = topics
        self._store = store
        self._decode = decode
        self._on_batch = on_batch
        self._assigned = threading.Event()
        self._last_wait = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gateway-scores-view", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def ready(self) -> bool:
        """True once every partition is assigned and the thread still reads."""
        return self._assigned.is_set() and self._thread.is_alive()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        consumer = Consumer(self._conf)
        try:
            while not self._stop.is_set() and not self._assign(consumer):
                self._stop.wait(1.0)
            while not self._stop.is_set():
                # consume(n, timeout) waits the whole timeout for n messages: wait for the first one only, then
                # take what is already fetched, so a result is in the store as soon as it is read
                first = consumer.poll(0.2)
                if first is not None:
                    self._apply([first, *consumer.consume(BATCH - 1, timeout=0)])
        except Exception:
            log.exception("the scores view stopped")  # ready() turns false: the gateway refuses uploads
            raise
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> bool:
        partitions = []
        for topic in (self._scores, self._dlq):
            try:
                metadata = consumer.list_topics(topic, timeout=5)
            except KafkaException as exc:
                self._waiting(f"no metadata for {topic} yet: {exc}")
                return False
            described = metadata.topics.get(topic)
            if described is None or described.error is not None or not described.partitions:
                self._waiting(f"topic {topic} is not there yet")
                return False
            stored = self._store.offsets(topic)
            partitions += [TopicPartition(topic, p, stored.get(p, OFFSET_BEGINNING)) for p in described.partitions]
        consumer.assign(partitions)
        self._assigned.set()
        log.info("scores view: reading %d partitions of %s and %s", len(partitions), self._scores, self._dlq)
        return True

    def _waiting(self, why: str) -> None:
        """Log why the view cannot start yet, once per reason (it retries every second)."""
        if why != self._last_wait:
            log.warning("scores view: %s; retrying", why)
            self._last_wait = why

    def _apply(self, messages: list[Message]) -> None:
        batch = ViewBatch({}, {}, {})
        skipped = 0
        for message in messages:
            if message.error() is not None:
                log.warning("scores view: %s", message.error())
                continue
            topic, partition, offset = str(message.topic()), int(message.partition() or 0), message.offset()
            batch.offsets[(topic, partition)] = int(offset or 0) + 1
            if not self._read(message, batch):
                skipped += 1
        answered = self._store.apply(batch)
        self._on_batch(batch, skipped, answered)

    def _read(self, message: Message, batch: ViewBatch) -> bool:
        """Add one message to ``batch``; False when it is neither a readable result nor a gateway dead letter."""
        if message.topic() == self._scores:
            try:
                result = self._decode(message.value() or b"")
            except InvalidEventError:
                return False
            batch.results[result["application_hash"]] = result_record(result)
            return True
        task_id = task_of_key(message.key())
        try:
            info = DeadLetterInfo.from_headers(message.headers())  # type: ignore[arg-type]  # a list of pairs
        except (KeyError, ValueError):
            return False
        if task_id is None:
            return False
        batch.dead_letters[task_id] = dead_letter_record(info)
        return True
