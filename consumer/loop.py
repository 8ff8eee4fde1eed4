"""The run loop of one worker: consume a batch, score it, publish it, store offsets once acknowledged.

at_least_once: offsets are stored only after the broker acknowledged every result and dead letter of their
batch (and every batch before it); librdkafka's auto-commit commits what was stored; revoke and shutdown
flush and commit synchronously. exactly_once: each batch's results, dead letters and input offsets commit in
one transaction. A stop request (SIGTERM/SIGINT) lets the current batch finish, then flushes, commits and
leaves the group.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from consumer.delivery import BatchPublisher
from consumer.engine import BatchOutcome, ScoringEngine, quiet_collector
from consumer.logs import KAFKA_LOG
from consumer.observer import LoopObserver, NullObserver
from consumer.offsets import InFlightBatch, OffsetTracker
from consumer.settings import Settings

log = logging.getLogger(__name__)
_SHUTDOWN_FLUSH_S = 8.0
_COMMIT_INTERVAL_MS = 1000
_BROKER_DOWN_CODES = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE}


class ScoringLoop:
    """One consumer-group member. Build it, call ``run()``; ``request_stop()`` may come from a signal handler."""

    def __init__(
        self, settings: Settings, engine: ScoringEngine, observer: LoopObserver | None = None, worker: int = 0
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.observer: LoopObserver = observer or NullObserver()
        self.worker = worker
        self.exactly_once = settings.guarantee == "exactly_once"
        self._stop = False
        self._tracker = OffsetTracker()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._publisher: BatchPublisher | None = None
        self._last_log: dict[str, float] = {}

    def request_stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        """Consume until ``request_stop()``; then drain and leave the group. Raises only on fatal Kafka errors."""
        self.observer.models_loaded(self.engine.models)
        quiet_collector()
        consumer, producer = self._connect()
        try:
            consumer.subscribe([self.settings.topics.input], on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_lost)  # fmt: skip
            log.info("worker %d consuming %s as group %s (%s)", self.worker, self.settings.topics.input,
                     self.settings.consumer.group_id, self.settings.guarantee)  # fmt: skip
            while not self._stop:
                self._step(consumer, producer)
            self._drain(consumer, producer)
        finally:
            consumer.close()  # commits what was stored and leaves the group
            log.info("worker %d left the group", self.worker)

    def _connect(self) -> tuple[Consumer, Producer]:
        settings = self.settings
        callbacks = {"error_cb": self._on_kafka_error, "stats_cb": self.observer.kafka_stats, "logger": KAFKA_LOG}
        consumer_conf = settings.consumer_config() | callbacks
        # What a crashed worker re-delivers is what it stored since the last commit: librdkafka's 5 s default
        # would be 5 s of throughput in duplicates. ``kafka.extra`` still wins.
        consumer_conf.setdefault("auto.commit.interval.ms", _COMMIT_INTERVAL_MS)
        txn_id = None
        if self.exactly_once:
            consumer_conf["enable.auto.commit"] = False
            # unique per host and worker, stable across restarts: a restarted worker fences its own zombie
            txn_id = f"{settings.consumer.group_id}-{settings.topics.input}-{socket.gethostname()}-{self.worker}"
        producer_conf = settings.producer_config(txn_id) | {"error_cb": self._on_kafka_error, "logger": KAFKA_LOG}
        producer = Producer(producer_conf)
        if self.exactly_once:
            producer.init_transactions(30)
        self._consumer, self._producer = Consumer(consumer_conf), producer
        # at_least_once: a producer fenced after an outage is replaced (a transactional one never is)
        renew = None if self.exactly_once else (lambda: Producer(producer_conf))
        self._publisher = BatchPublisher(producer, settings.topics.output, settings.topics.dlq, renew)
        return self._consumer, producer

    def _step(self, consumer: Consumer, producer: Producer) -> None:
        self.observer.heartbeat()
        messages = consumer.consume(self.settings.consumer.batch_size, self.settings.consumer.batch_timeout_s)
        assert self._publisher is not None
        self._publisher.producer.poll(0)  # the publisher's producer: it may have replaced ours
        self._publisher.retry_failed()
        if not self.exactly_once:
            self._release(consumer)
        good = [m for m in messages if not self._is_error(m)]
        if not good:
            return
        outcome = self.engine.score_batch([m.value() for m in good])
        batch = InFlightBatch(_next_offsets(good), pending=len(good))
        batch.event_times_ms = [s.event_time_ms for s in outcome.scored]
        batch.dead_letters = len(outcome.rejected)
        started = time.perf_counter()
        if self.exactly_once:
            self._publish_transaction(consumer, producer, batch, good, outcome)
        else:
            self._tracker.add(batch)
            self._publisher.publish(batch, good, outcome)
        outcome.stage_seconds["publish"] = time.perf_counter() - started
        self.observer.batch_scored(outcome, len(good))

    def _publish_transaction(
        self, consumer: Consumer, producer: Producer, batch: InFlightBatch, good: list[Message], outcome: BatchOutcome
    ) -> None:
        assert self._publisher is not None
        producer.begin_transaction()
        self._publisher.publish(batch, good, outcome)
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
        try:
            producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(60)
        except KafkaException as exc:
            error = exc.args[0]
            if not error.txn_requires_abort():
                raise
            log.warning("transaction aborted (%s); rewinding the batch to score it again", error.str())
            producer.abort_transaction(30)
            for (topic, partition), _ in batch.next_offsets.items():
                first = min(m.offset() or 0 for m in good if m.topic() == topic and m.partition() == partition)
                consumer.seek(TopicPartition(topic, partition, first))
            return
        self._report(batch)

    def _release(self, consumer: Consumer) -> None:
        offsets, done = self._tracker.releasable()
        if offsets:
            consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        for batch in done:
            self._report(batch)

    def _report(self, batch: InFlightBatch) -> None:
        now_ms = time.time() * 1000.0
        latencies = (now_ms - np.asarray(batch.event_times_ms, dtype=np.float64)) / 1000.0
        self.observer.batch_published(len(batch.event_times_ms), batch.dead_letters, latencies)

    def _is_error(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            self._log_every("topic", 15, "input topic %s does not exist (yet); waiting for it", msg.topic())
        elif err.code() != KafkaError._PARTITION_EOF:
            self._log_every(str(err.code()), 10, "consume error: %s", err.str())
        if err.fatal():
            raise KafkaException(err)
        return True

    def _flush_and_commit(self, consumer: Consumer, timeout: float) -> None:
        assert self._producer is not None and self._publisher is not None
        deadline = time.monotonic() + timeout
        while self._tracker.in_flight and time.monotonic() < deadline:
            self._publisher.producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
            self._publisher.retry_failed()
        self._release(consumer)
        if self._tracker.in_flight:
            log.warning("%d deliveries still unacknowledged: their offsets stay uncommitted", self._tracker.in_flight)
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit failed: %s", exc.args[0].str())

    def _drain(self, consumer: Consumer, producer: Producer) -> None:
        log.info("worker %d stopping: flushing %d in-flight deliveries", self.worker, self._tracker.in_flight)
        if not self.exactly_once:
            self._flush_and_commit(consumer, _SHUTDOWN_FLUSH_S)

    def _on_assign(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        log.info("worker %d assigned %d partition(s)", self.worker, len(partitions))
        self.observer.assignment_changed(len(consumer.assignment()) + len(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        log.info("worker %d revoked %d partition(s): committing what was acknowledged", self.worker, len(partitions))
        if not self.exactly_once:
            self._flush_and_commit(consumer, _SHUTDOWN_FLUSH_S)
        self._tracker.forget_partitions({(tp.topic, tp.partition) for tp in partitions})
        self.observer.assignment_changed(0)

    def _on_lost(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        log.warning("worker %d lost %d partition(s) (session timed out)", self.worker, len(partitions))
        self._tracker.forget_partitions({(tp.topic, tp.partition) for tp in partitions})
        self.observer.assignment_changed(0)

    def _on_kafka_error(self, err: KafkaError) -> None:
        down = err.code() in _BROKER_DOWN_CODES
        if down:
            self.observer.broker_state(False)
        self._log_every(str(err.code()), 10, "kafka: %s%s", err.str(), " (retrying)" if down else "")

    def _log_every(self, key: str, seconds: float, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, 0.0) >= seconds:
            self._last_log[key] = now
            log.warning(message, *args)


def _next_offsets(messages: Sequence[Message]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for m in messages:
        tp = (m.topic() or "", m.partition() or 0)
        offsets[tp] = max(offsets.get(tp, 0), (m.offset() or 0) + 1)
    return offsets
