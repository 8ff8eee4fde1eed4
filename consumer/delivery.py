"""Producing a scored batch: results to the output topic, dead letters to the DLQ, acks counted per batch.

A delivery that fails after the producer's own retries (``delivery.timeout.ms``) is produced again, so a
long broker outage delays results but never loses them: the input offset is only stored once the retry
is acknowledged. Some failures leave the producer itself unable to deliver anything again (fenced after its
messages timed out, or a fatal error): re-producing through it would fail forever, so the publisher swaps in
a new producer (when given a way to make one) and re-produces through that.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from consumer.engine import BatchOutcome
from consumer.offsets import InFlightBatch
from schemas.dead_letter import DeadLetterInfo

log = logging.getLogger(__name__)
_OnDelivery = Callable[[KafkaError | None, Message], None]
_RETRY_PAUSE_S = 1.0
_DRAIN_S = 5.0
# After these, this producer instance delivers nothing more (seen when an outage made messages time out and
# the broker fenced the producer's bumped epoch); a new producer gets a new id and delivers again.
_PRODUCER_GONE = {KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH, KafkaError._FENCED,
                  KafkaError._FATAL}  # fmt: skip


class BatchPublisher:
    """Produces what a batch turned into and tracks its acknowledgements."""

    def __init__(
        self, producer: Producer, output_topic: str, dlq_topic: str, renew: Callable[[], Producer] | None = None
    ) -> None:
        self.producer = producer
        self._renew = renew  # makes a replacement for a producer that can no longer deliver; None = never
        self._output = output_topic
        self._dlq = dlq_topic
        self._retries: list[tuple[Message, _OnDelivery]] = []
        self._last_failure_log = 0.0
        self._gone: KafkaError | None = None

    def publish(self, batch: InFlightBatch, messages: Sequence[Message], outcome: BatchOutcome) -> None:
        """Produce every result and dead letter of ``outcome`` (indices point into ``messages``)."""
        ack = self._acker(batch)
        for scored in outcome.scored:
            self._produce(self._output, scored.value, scored.key, None, ack)
        failed_at = dt.datetime.now(dt.UTC)
        for rejected in outcome.rejected:
            msg = messages[rejected.index]
            info = DeadLetterInfo(
                reason=rejected.error.reason,
                error=str(rejected.error),
                field=rejected.error.field,
                topic=msg.topic() or "",
                partition=msg.partition() or 0,
                offset=msg.offset() or 0,
                failed_at=failed_at,
            )
            self._produce(self._dlq, msg.value(), msg.key(), info.headers(), ack)

    def retry_failed(self) -> None:
        """Produce again what failed after the producer's own retries (called from the loop); first replace
        the producer if it can no longer deliver."""
        if self._gone is not None and self._renew is not None:
            self._replace_producer(self._gone)
        retries, self._retries = self._retries, []
        if retries:
            time.sleep(_RETRY_PAUSE_S)  # the broker is likely down: do not spin
        for msg, on_delivery in retries:
            self._produce(msg.topic() or "", msg.value(), msg.key(), msg.headers(), on_delivery)

    @property
    def waiting_retries(self) -> int:
        return len(self._retries)

    def _replace_producer(self, error: KafkaError) -> None:
        old = self.producer
        # What the old producer still holds can never be delivered by it: purged, its reports come back as
        # failures and join the retries, so every batch still hears about each of its messages.
        old.purge()
        old.flush(_DRAIN_S)
        self._gone = None  # the reports just drained were about the old producer
        self.producer = self._renew() if self._renew is not None else old
        log.warning("the producer can no longer deliver (%s): re-producing through a new one", error.str())

    def _acker(self, batch: InFlightBatch) -> _OnDelivery:
        return _BatchAcks(self, batch)

    def _failed(self, err: KafkaError, msg: Message, on_delivery: _OnDelivery) -> None:
        self._retries.append((msg, on_delivery))
        if err.fatal() or err.code() in _PRODUCER_GONE:
            self._gone = err
        now = time.monotonic()
        if now - self._last_failure_log > 10:
            self._last_failure_log = now
            log.warning("delivery to %s failed (%s); producing it again", msg.topic(), err.str())

    def _produce(self, topic: str, value: Any, key: Any, headers: Any, on_delivery: _OnDelivery) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: serve delivery reports, then try again
                self.producer.poll(0.05)


class _BatchAcks:
    """The delivery callback of one batch's messages: counts acknowledgements, hands failures back.

    An object, not a closure: a closure that passes itself on for its retries refers to itself, and that cycle
    (holding the batch) outlived every batch until a full garbage collection, which a scoring worker rarely
    runs; the soak test saw the resident set creep up by it.
    """

    __slots__ = ("_batch", "_publisher")

    def __init__(self, publisher: BatchPublisher, batch: InFlightBatch) -> None:
        self._publisher = publisher
        self._batch = batch

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self._batch.pending -= 1
            return
        self._batch.failed += 1
        self._publisher._failed(err, msg, self)
