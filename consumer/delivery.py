"""Producing a scored batch: results to the output topic, dead letters to the DLQ, acks counted per batch.

A delivery that fails after the producer's own retries (``delivery.timeout.ms``) is produced again, so a
long broker outage delays results but never loses them: the input offset is only stored once the retry
is acknowledged.
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


class BatchPublisher:
    """Produces what a batch turned into and tracks its acknowledgements."""

    def __init__(self, producer: Producer, output_topic: str, dlq_topic: str) -> None:
        self._producer = producer
        self._output = output_topic
        self._dlq = dlq_topic
        self._retries: list[tuple[Message, _OnDelivery]] = []
        self._last_failure_log = 0.0

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
        """Produce again what failed after the producer's own retries (called from the loop)."""
        retries, self._retries = self._retries, []
        if retries:
            time.sleep(_RETRY_PAUSE_S)  # the broker is likely down: do not spin
        for msg, on_delivery in retries:
            self._produce(msg.topic() or "", msg.value(), msg.key(), msg.headers(), on_delivery)

    @property
    def waiting_retries(self) -> int:
        return len(self._retries)

    def _acker(self, batch: InFlightBatch) -> _OnDelivery:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                batch.pending -= 1
                return
            batch.failed += 1
            self._retries.append((msg, on_delivery))
            now = time.monotonic()
            if now - self._last_failure_log > 10:
                self._last_failure_log = now
                log.warning("delivery to %s failed (%s); producing it again", msg.topic(), err.str())

        return on_delivery

    def _produce(self, topic: str, value: Any, key: Any, headers: Any, on_delivery: _OnDelivery) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: serve delivery reports, then try again
                self._producer.poll(0.05)
