"""The monitor's Kafka edge: one member of its own consumer group over ``crm.scores`` and ``crm.outcomes``.

Range assignment gives a member partition N of both topics together (they are co-partitioned by
``application_id``), so each partition's join happens on one member. On assignment a partition resumes
from the offsets its state store holds, or, when the store holds nothing for it or the group committed
further than the store (another member had it meanwhile), its state is dropped and rebuilt by reading both
topics from the beginning: the topics are the changelog. The group's committed offsets follow the store
(after each write), for lag and for that check; they are never where a member resumes from. The captured rows
are in that same write (the capture's outbox), so no offset is stored or committed past a row not yet durable.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer.endpoints import serve_endpoints
from consumer.monitor.capture import Capture
from consumer.monitor.health import MonitorHealth
from consumer.monitor.join import CHALLENGER
from consumer.monitor.metrics import MonitorMetrics, MonitorState
from consumer.monitor.processor import APPLICATIONS, OUTCOMES, SCORES, SHADOW, InputMessage, MonitorCore
from consumer.monitor.rollback import rule_of
from consumer.monitor.settings import MonitorSettings
from consumer.monitor.writer import CHECK_EVERY_S, WriterLease
from schemas import SchemaSource
from schemas.errors import KafkaRefusedError

log = logging.getLogger(__name__)
_BATCH = 1000
_REFUSED = (
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
)
_POLL_S = 0.5


class MonitorLoop:
    """Consume, join, store, export; ``stop()`` (or SIGTERM through ``run``) ends it after the batch."""

    def __init__(
        self,
        settings: MonitorSettings,
        core: MonitorCore,
        metrics: MonitorMetrics,
        capture: Capture | None = None,
        health: MonitorHealth | None = None,
    ) -> None:
        self._settings = settings
        self._health = health if health is not None else MonitorHealth()
        self._core = core
        self._metrics = metrics
        self._capture = capture
        self._stream = {settings.topics.scores: SCORES, settings.topics.outcomes: OUTCOMES}
        if settings.topics.applications is not None:
            self._stream[settings.topics.applications] = APPLICATIONS
        if settings.topics.shadow is not None:
            self._stream[settings.topics.shadow] = SHADOW
        self._topic = {v: k for k, v in self._stream.items()}
        self._stop = threading.Event()
        self._lease = WriterLease.over(settings.librdkafka()) if settings.single_writer else None
        self._standing_by = False
        self.consumer: Consumer | None = None
        self.last_state = MonitorState()
        self._last_activity = 0.0

    def stop(self) -> None:
        self._stop.set()

    def run(self, until_idle_s: float | None = None) -> None:
        """Run until ``stop()``, SIGTERM/SIGINT, or ``until_idle_s`` seconds without a message."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())
        consumer = self.consumer = Consumer(self._settings.librdkafka())
        try:
            while not self._stop.is_set():
                self._stand_by()
                if self._stop.is_set():
                    break
                consumer.subscribe(list(self._stream), on_assign=self._on_assign, on_revoke=self._on_revoke)
                if self._write(consumer, until_idle_s):
                    break
                # another writer won the race to join: hand the partitions back and stand by again
                if self._capture is not None:
                    self._capture.flush()
                consumer.unsubscribe()
            self.evaluate()
        finally:
            if self._capture is not None:
                self._capture.flush()  # while the partitions (and the events they hold) are still this member's
            consumer.close()  # leaves the group; the store already holds everything consumed

    def _stand_by(self) -> None:
        """Wait, alive and not ready, while another monitor is in the group (see :mod:`consumer.monitor.writer`)."""
        if self._lease is None:
            return
        checked = float("-inf")
        while not self._stop.is_set():
            self._health.beat()
            now = time.monotonic()
            if now - checked >= CHECK_EVERY_S:
                checked = now
                if self._lease.free():
                    break
                if not self._standing_by:
                    log.info(
                        "monitor standing by: another member writes for group %s; taking over when it leaves",
                        self._lease.group,
                    )
                    self._standing_by = True
                    self._metrics.standby.set(1)
            self._stop.wait(_POLL_S)
        if self._standing_by:
            log.info("monitor taking over group %s: no other member left in it", self._lease.group)
        self._standing_by = False
        self._metrics.standby.set(0)

    def _write(self, consumer: Consumer, until_idle_s: float | None) -> bool:
        """Consume, join, store and export until a stop (True), ``until_idle_s`` without a message (True), or
        another member in the group with the lesser member id (False: this one yields)."""
        self._last_activity, last_evaluation, checked = time.monotonic(), 0.0, time.monotonic()
        while not self._stop.is_set():
            self._health.beat()
            messages = consumer.consume(_BATCH, timeout=_POLL_S)
            batch = self._batch(messages)
            if batch:
                self._last_activity = time.monotonic()
                self._apply(consumer, batch)
            now = time.monotonic()
            if now - last_evaluation >= self._settings.quality.evaluate_every_s:
                self.evaluate()
                last_evaluation = now
            if self._capture is not None:
                self._capture.tick()
            # Idle counts from the last message or assignment: a member waiting to join is not idle.
            if until_idle_s is not None and self._core.partitions and now - self._last_activity > until_idle_s:
                return True
            if self._lease is not None and now - checked >= CHECK_EVERY_S:
                checked = now
                member = consumer.memberid()
                if member and self._lease.yields(member):
                    log.warning("monitor yielding group %s: another member joined at the same time", self._lease.group)
                    return False
        return True

    def evaluate(self) -> None:
        """Recompute the figures from the store and publish them to the metrics."""
        self.last_state = self._core.state()
        self._metrics.state.publish(self.last_state)
        if self._core.rule is not None:
            for model in self._core.rule.act(self.last_state.rollback):
                self._metrics.rollbacks.labels(model).inc()

    def _batch(self, messages: list[Message]) -> list[InputMessage]:
        batch = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() in _REFUSED:  # no retry mends a missing ACL: stop with one line saying which
                    raise KafkaRefusedError(
                        f"Kafka refused the monitor: {error.str()} (grant the ACLs `crm-scorer acls --role "
                        "monitor` prints)"
                    )
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", error.str())
                continue
            stream = self._stream[str(message.topic())]
            self._metrics.messages.labels(stream).inc()
            partition, offset = int(message.partition() or 0), int(message.offset() or 0)
            batch.append(InputMessage(stream, partition, offset, message.key(), message.value()))
        return batch

    def _apply(self, consumer: Consumer, batch: list[InputMessage]) -> None:
        result = self._core.apply(batch, self._capture.stage if self._capture is not None else None)
        for stream, count in result.undecodable.items():
            if count:
                self._metrics.undecodable.labels(stream).inc(count)
        if any(m.stream == OUTCOMES for m in batch):
            self._metrics.last_outcome.set_to_current_time()
        for row in result.rows:
            self._metrics.label_delay.labels(row.model).observe(max(row.delay_s, 0.0))
        for model in result.fired:
            log.warning("concept drift: the detector of %s fired", model)
        if self._capture is not None:
            self._capture.add([r for r in result.rows if not r.model.endswith(CHALLENGER)])
        consumer.commit(offsets=self._next_offsets(batch), asynchronous=True)

    def _next_offsets(self, batch: list[InputMessage]) -> list[TopicPartition]:
        last: dict[tuple[str, int], int] = {}
        for m in batch:
            last[(m.stream, m.partition)] = max(last.get((m.stream, m.partition), -1), m.offset)
        return [TopicPartition(self._topic[s], p, o + 1) for (s, p), o in last.items()]

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=10)}
        numbers = sorted({tp.partition for tp in partitions})
        for number in numbers:
            self._resume(number, committed)
        for tp in partitions:
            stored = self._core.start_offset(self._stream[tp.topic], tp.partition)
            tp.offset = OFFSET_BEGINNING if stored is None else stored
        self._core.assigned(set(self._core.partitions) | set(numbers))
        self._metrics.partitions.set(len(self._core.partitions))
        self._health.assigned(len(self._core.partitions))
        self._last_activity = time.monotonic()
        log.info("monitor assigned partitions %s", numbers)
        self._warn_if_partial(consumer)
        consumer.assign(partitions)

    def _warn_if_partial(self, consumer: Consumer) -> None:
        """One writer is the design (docs/reliability.md): say so when another member holds some partitions."""
        topic = self._settings.topics.scores
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        except KafkaException:  # only a warning is at stake: never fail an assignment for it
            return
        total = len(metadata.partitions) if metadata is not None else 0
        if 0 < len(self._core.partitions) < total:
            log.warning(
                "monitor owns %d of the %d partitions: another member has the rest, and this member's figures, "
                "detectors and decisions are over its own partitions only",
                len(self._core.partitions),
                total,
            )

    def _resume(self, number: int, committed: dict[tuple[str, int], int]) -> None:
        """Drop ``number``'s local state when it is missing for a stream or older than the group's commit."""
        for topic, stream in self._stream.items():
            stored = self._core.start_offset(stream, number)
            group = committed.get((topic, number), -1)
            if group >= 0 and (stored is None or group > stored):
                log.info("partition %d: local state behind the group (%s < %s): rebuilding it", number, stored, group)
                self._core.reset_partition(number)
                return

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self._core.assigned(set(self._core.partitions) - gone)
        self._metrics.partitions.set(len(self._core.partitions))
        self._health.assigned(len(self._core.partitions))


def run_monitor(
    settings: MonitorSettings, until_idle_s: float | None = None, ready: Callable[[int], Any] | None = None
) -> str:
    """Open the store, serve /metrics, /healthz and /readyz, run the loop (the ``crm-scorer monitor`` command's
    body); the summary line of what the store holds when it stops."""
    from consumer.monitor.outbox import StoreOutbox
    from consumer.monitor.store import StateStore

    metrics, health = MonitorMetrics(), MonitorHealth()
    host = settings.metrics_host
    with serve_endpoints(metrics.registry, health, host, settings.metrics_port, "monitor metrics") as port:
        log.info("monitor metrics on http://%s:%d/metrics (health: /healthz, /readyz)", host, port)
        with StateStore(settings.store.path) as store:
            health.store_opened()
            core = MonitorCore(store, settings, registry_source(settings), rule_of(settings))
            capture = (
                Capture(settings.capture_dir, core.event_of, settings.capture_flush_s, StoreOutbox(store))
                if settings.capture_dir is not None
                else None
            )
            loop = MonitorLoop(settings, core, metrics, capture, health)
            if ready is not None:
                ready(port)
            loop.run(until_idle_s)
            return summary_line(loop.last_state)


def registry_source(settings: MonitorSettings) -> SchemaSource | None:
    """The Schema Registry behind Confluent-framed scores when ``schema_registry.url`` is set (no network yet)."""
    conf = settings.schema_registry.client_config()
    if not conf:
        return None
    from schemas.registry import RegistrySchemaSource

    return RegistrySchemaSource.from_url(**conf)


def summary_line(state: MonitorState) -> str:
    """``joined=N duplicates=D unmatched=U drift=[...] retrain=[...]`` and each model's count-window AUC / ECE."""
    c = state.counters
    joined = sum(v for k, v in c.items() if k.startswith("joined/"))
    fired = sorted(k.partition("/")[2] for k, v in c.items() if k.startswith("drift/") and v)
    parts = [
        f"scores={c.get('scores', 0)} outcomes={c.get('outcomes', 0)} joined={joined}",
        f"duplicates={c.get('outcomes_duplicate', 0)} unmatched={c.get('outcomes_unmatched', 0)}",
        f"drift={','.join(fired) or '-'}",
        f"retrain={','.join(sorted(m for m, d in state.decisions.items() if d.retrain)) or '-'}",
    ]
    for (model, window), q in sorted(state.figures.items()):
        if window == "count":
            parts.append(f"{model}:auc={q.auc:.3f}/ece={q.ece:.3f}/n={q.outcomes}")
    return " ".join(parts)
