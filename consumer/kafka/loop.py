"""The run loop of one worker: consume a batch, score it, hand it to the guarantee to publish.

The guarantee (:mod:`consumer.kafka.guarantees`) decides when offsets are stored or committed: at_least_once once
the broker acknowledged every delivery of a batch and of every batch before it; exactly_once in the batch's own
transaction. A stop request (SIGTERM/SIGINT) lets the current batch finish, then the guarantee settles what is
in flight and the consumer commits and leaves the group.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer.core.engine import ScoringEngine, quiet_collector
from consumer.core.offsets import InFlightBatch
from consumer.kafka.delivery import PublishError
from consumer.kafka.guarantees import AtLeastOnce, ExactlyOnce, Guarantee
from consumer.settings import Settings
from consumer.telemetry.logs import KAFKA_LOG, Throttle
from consumer.telemetry.observer import LoopObserver, NullObserver

log = logging.getLogger(__name__)
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
        self._stop = False
        self._guarantee: Guarantee | None = None
        self._consumer: Consumer | None = None
        self._throttle = Throttle(10.0)

    def request_stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        """Consume until ``request_stop()``; then drain and leave the group.

        Raises:
            KafkaException: a fatal Kafka error no retry mends.
            PublishError: a delivery no retry mends (a missing topic); offsets of what it held stay uncommitted.
        """
        self.observer.models_loaded(self.engine.models)
        quiet_collector()
        consumer, guarantee = self._connect()
        try:
            consumer.subscribe([self.settings.topics.input], on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_lost)  # fmt: skip
            log.info("worker %d consuming %s as group %s (%s)", self.worker, self.settings.topics.input,
                     self.settings.consumer.group_id, guarantee.name)  # fmt: skip
            while not self._stop:
                self._step(consumer, guarantee)
            log.info("worker %d stopping", self.worker)
            guarantee.drain(consumer)
        except PublishError as exc:
            log.error("worker %d: %s", self.worker, exc)
            raise
        finally:
            consumer.close()  # commits what was stored and leaves the group
            log.info("worker %d left the group", self.worker)

    def _connect(self) -> tuple[Consumer, Guarantee]:
        settings = self.settings
        callbacks = {"error_cb": self._on_kafka_error, "stats_cb": self.observer.kafka_stats, "logger": KAFKA_LOG,
                     "on_commit": self._on_commit}  # fmt: skip
        consumer_conf = settings.consumer_config() | callbacks
        # What a crashed worker re-delivers is what it stored since the last commit: librdkafka's 5 s default
        # would be 5 s of throughput in duplicates. ``kafka.extra`` still wins.
        consumer_conf.setdefault("auto.commit.interval.ms", _COMMIT_INTERVAL_MS)
        topics = settings.topics
        guarantee: Guarantee
        if settings.guarantee == "exactly_once":
            consumer_conf["enable.auto.commit"] = False
            # unique per host and worker, stable across restarts: a restarted worker fences its own zombie
            instance = settings.consumer.instance_id or socket.gethostname()
            txn_id = f"{settings.consumer.group_id}-{topics.input}-{instance}-{self.worker}"
            producer_conf = settings.producer_config(txn_id) | {"error_cb": self._on_kafka_error, "logger": KAFKA_LOG}
            guarantee = ExactlyOnce(producer_conf, topics.output, topics.dlq, self._report,
                                    reset=settings.consumer.auto_offset_reset, stalled=self._stalled)  # fmt: skip
        else:
            producer_conf = settings.producer_config() | {"error_cb": self._on_kafka_error, "logger": KAFKA_LOG}
            guarantee = AtLeastOnce(producer_conf, topics.output, topics.dlq, self._report)
        guarantee.start()
        self._guarantee = guarantee
        self._consumer = Consumer(consumer_conf)
        return self._consumer, guarantee

    def _step(self, consumer: Consumer, guarantee: Guarantee) -> None:
        self.observer.heartbeat()
        messages = consumer.consume(self.settings.consumer.batch_size, self.settings.consumer.batch_timeout_s)
        guarantee.tick(consumer)
        good = [m for m in messages if not self._is_error(m)]
        if not good:
            return
        outcome = self.engine.score_batch([m.value() for m in good])
        batch = InFlightBatch(_next_offsets(good), pending=len(good))
        batch.event_times_ms = [s.event_time_ms for s in outcome.scored]
        batch.dead_letters = len(outcome.rejected)
        started = time.perf_counter()
        guarantee.publish(consumer, batch, good, outcome)
        outcome.stage_seconds["publish"] = time.perf_counter() - started
        self.observer.batch_scored(outcome, len(good))

    def _report(self, batch: InFlightBatch) -> None:
        now_ms = time.time() * 1000.0
        latencies = (now_ms - np.asarray(batch.event_times_ms, dtype=np.float64)) / 1000.0
        self.observer.batch_published(len(batch.event_times_ms), batch.dead_letters, latencies)
        if self.settings.guarantee == "exactly_once" and self._consumer is not None:  # its transaction committed
            self._committed(self._consumer, batch.next_offsets)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """Every commit the broker answered: auto-commits (served by consume()), on revoke and on shutdown."""
        if err is None and self._consumer is not None:
            offsets = {(tp.topic, tp.partition): tp.offset for tp in partitions if tp.error is None}
            self._committed(self._consumer, offsets)

    def _committed(self, consumer: Consumer, offsets: dict[tuple[str, int], int]) -> None:
        held = {(tp.topic, tp.partition) for tp in consumer.assignment()}  # an answer after a revoke is not ours
        offsets = {tp: offset for tp, offset in offsets.items() if tp in held and offset >= 0}
        if offsets:
            self.observer.offsets_committed(offsets, {tp: _cached_high_watermark(consumer, *tp) for tp in offsets})

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

    def _on_assign(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        log.info("worker %d assigned %d partition(s)", self.worker, len(partitions))
        self.observer.assignment_changed(len(consumer.assignment()) + len(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        log.info("worker %d revoked %d partition(s): committing what was acknowledged", self.worker, len(partitions))
        if self._guarantee is not None:
            self._guarantee.revoked(consumer, partitions)
        self.observer.assignment_changed(0)

    def _on_lost(self, consumer: Consumer, partitions: Sequence[TopicPartition]) -> None:
        log.warning("worker %d lost %d partition(s) (session timed out)", self.worker, len(partitions))
        if self._guarantee is not None:
            self._guarantee.lost(partitions)
        self.observer.assignment_changed(0)

    def _on_kafka_error(self, err: KafkaError) -> None:
        down = err.code() in _BROKER_DOWN_CODES
        if down:
            self.observer.broker_state(False)
        self._log_every(str(err.code()), 10, "kafka: %s%s", err.str(), " (retrying)" if down else "")

    def _stalled(self, waiting: bool) -> None:
        """A transactional call waits on a broker that does not answer (True) or answered again (False): not
        ready meanwhile, and still alive (the wait is deliberate)."""
        self.observer.broker_state(not waiting)
        self.observer.heartbeat()

    def _log_every(self, key: str, seconds: float, message: str, *args: object) -> None:
        if self._throttle.ready(key, seconds):
            log.warning(message, *args)


def _next_offsets(messages: Sequence[Message]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for m in messages:
        tp = (m.topic() or "", m.partition() or 0)
        offsets[tp] = max(offsets.get(tp, 0), (m.offset() or 0) + 1)
    return offsets


def _cached_high_watermark(consumer: Consumer, topic: str, partition: int) -> int:
    """The high watermark of the partition's latest fetch response (no request is sent); -1 if none yet."""
    try:
        watermarks = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
    except KafkaException:
        return -1
    return int(watermarks[1]) if watermarks else -1
