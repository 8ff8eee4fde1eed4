"""Producing a scored batch: results to the output topic, dead letters to the DLQ, acks counted per batch.

A delivery that fails after the producer's own retries (``delivery.timeout.ms``) is produced again, so a
long broker outage delays results but never loses them: the input offset is only stored once the retry
is acknowledged. Some failures leave the producer itself unable to deliver anything again (fenced after its
messages timed out, or a fatal error): re-producing through it would fail forever, so the publisher swaps in
a new producer (when given a way to make one) and re-produces through that.

What happens to a failed delivery is a value, :func:`delivery_verdict`: most errors are retried (an outage, a
leader moving, a missing permission being granted); a result the broker refuses for what it is (too large, an
invalid record) goes to the dead-letter topic with the broker's error instead of being retried forever; a topic
that does not exist, or a dead letter the broker refuses, stops the worker with one clear line (its offsets stay
uncommitted). A publisher made with ``requeue=False`` (exactly-once) retries nothing itself: a failure inside a
transaction fails its commit, and the whole batch is rescored in a new transaction.

A topic the scorer's principal may not write to (no ACL) is neither dead-lettered nor fatal: an operator grants
the ACL and the scorer goes on by itself. The publisher records it as a :class:`Refusal` (one log line naming
the resource and the permission, every half minute), keeps what was refused for its retries (at-least-once) or
raises :class:`NotAuthorized` inside the transaction (exactly-once, which aborts it); the guarantee pauses the
input and reports not-ready until a delivery succeeds again.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Message

from consumer.core.engine import BatchOutcome, ScoredMessage
from consumer.core.offsets import InFlightBatch
from consumer.kafka.clients import DeliveryCallback, Headers, Sink
from consumer.telemetry.logs import Throttle
from schemas.dead_letter import RESULT_REJECTED, DeadLetterInfo
from schemas.errors import CrmScorerError

log = logging.getLogger(__name__)
_RETRY_PAUSE_S = 1.0
_DRAIN_S = 5.0
# After these, this producer instance delivers nothing more (seen when an outage made messages time out and
# the broker fenced the producer's bumped epoch); a new producer gets a new id and delivers again.
_PRODUCER_GONE = {KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH, KafkaError._FENCED, KafkaError._FATAL}


# The broker refuses the record itself: producing it again can only fail again.
_REFUSED_RECORD = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_MSG_SIZE,
}
_MISSING_TOPIC = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION}
# An ACL is missing: retried (slowly) until an operator grants it, never dead-lettered, never fatal.
NOT_AUTHORIZED = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "Topic",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "Cluster",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "TransactionalId",
}
_REFUSAL_LOG_S = 30.0
# Per process, not per publisher: exactly-once replaces its publisher on every refused transactional id.
_REFUSAL_LOG = Throttle(_REFUSAL_LOG_S)


class Verdict(enum.Enum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    STOP = "stop"


class PublishError(CrmScorerError):
    """A delivery failed in a way no retry can mend (a missing topic, a dead letter the broker refuses)."""


@dataclass(frozen=True)
class Refusal:
    """The broker refuses an operation on a resource to the scorer's principal: an ACL is missing."""

    resource: str  # as kafka-acls names it: Topic:crm.scores, TransactionalId:crm-scorer-crm.applications-host-0
    operation: str  # Write
    error: str  # the broker's words

    def covers(self, topic: str) -> bool:
        """True when a delivery to ``topic`` shows this refusal is over (any delivery, for a non-topic refusal)."""
        kind, _, names = self.resource.partition(":")
        return kind != "Topic" or topic in names.split(" or ")

    def line(self) -> str:
        """The one log line an operator needs: which ACL, and what the scorer does meanwhile."""
        return (
            f"not authorised: the broker refuses {self.operation} on {self.resource} to this principal "
            f"({self.error}); holding what was scored, committing nothing, not ready, retrying until the ACL "
            "is granted (crm-scorer acls prints every ACL the scorer needs)"
        )


def refusal_of(err: KafkaError, resource_name: str, operation: str = "Write") -> Refusal | None:
    """The refusal ``err`` reports for ``resource_name`` (a topic or transactional id); None if it is not one."""
    kind = NOT_AUTHORIZED.get(err.code())
    if kind is None:
        return None
    resource = "Cluster:kafka-cluster" if kind == "Cluster" else f"{kind}:{resource_name}"
    operation = "IdempotentWrite" if kind == "Cluster" else operation
    return Refusal(resource, operation, err.str())


class NotAuthorized(CrmScorerError):
    """Raised inside an exactly-once transaction when the broker refuses a produce for a missing ACL."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.line())
        self.refusal = refusal


def delivery_verdict(err: KafkaError, is_dead_letter: bool) -> Verdict:
    """What to do with a delivery that failed after the producer's own retries."""
    code = err.code()
    if code in _MISSING_TOPIC:
        return Verdict.STOP
    if code in _REFUSED_RECORD:
        return Verdict.STOP if is_dead_letter else Verdict.DEAD_LETTER
    return Verdict.RETRY


class BatchPublisher:
    """Produces what a batch turned into and tracks its acknowledgements."""

    def __init__(
        self,
        producer: Sink,
        output_topic: str,
        dlq_topic: str,
        renew: Callable[[], Sink] | None = None,
        *,
        requeue: bool = True,
        shadow: str | None = None,
    ) -> None:
        self.producer = producer
        self._shadow = shadow  # the challenger's scores (models.shadow_topic); None: none are produced
        self._requeue = requeue
        self._renew = renew  # makes a replacement for a producer that can no longer deliver; None = never
        self._output = output_topic
        self._dlq = dlq_topic
        self._retries: list[_Pending] = []
        self._failure_log = Throttle(10.0)
        self.refusal: Refusal | None = None  # set while the broker refuses a delivery for a missing ACL
        self.topics: set[str] = set()  # the topics the last publish() produced to
        self._gone: KafkaError | None = None
        self._stop: PublishError | None = None
        self._refused: dict[tuple[str, int, int], str] = {}  # exactly-once: input position -> the broker's refusal

    def publish(self, batch: InFlightBatch, messages: Sequence[Message], outcome: BatchOutcome) -> None:
        """Produce every result and dead letter of ``outcome`` (indices point into ``messages``)."""
        ack = _BatchAcks(self, batch, messages, outcome.scored)
        failed_at = dt.datetime.now(dt.UTC)
        self.topics = ({self._output} if outcome.scored else set()) | ({self._dlq} if outcome.rejected else set())
        for scored in outcome.scored:
            if self._refused and (refusal := self._refused.pop(_position(messages[scored.index]), None)):
                # exactly-once: refused in an aborted transaction; its dead letter goes in this one instead
                self._dead_letter(messages[scored.index], RESULT_REJECTED, refusal, None, failed_at, ack)
                continue
            self._produce_result(messages, scored, failed_at, ack)
        for rejected in outcome.rejected:
            error = rejected.error
            self._dead_letter(messages[rejected.index], error.reason, str(error), error.field, failed_at, ack)
        if outcome.shadow_records and self._shadow is not None:
            self._publish_shadow(outcome.shadow_records)

    def _produce_result(
        self, messages: Sequence[Message], scored: ScoredMessage, failed_at: dt.datetime, ack: _BatchAcks
    ) -> None:
        """Produce one result; one the client refuses at once for what it is (larger than the producer's
        ``message.max.bytes``) is dead-lettered in its place: nothing of it was produced, so the dead letter
        takes its slot in the batch (and in the open transaction, under exactly-once)."""
        try:
            self._produce(self._output, scored.value, scored.key, None, ack)
        except KafkaException as exc:
            if exc.args[0].code() not in _REFUSED_RECORD:
                raise
            source = messages[scored.index]
            log.warning(
                "the producer refused a result for %s [%d] @ %d (%s): dead-lettering its event",
                source.topic(),
                source.partition() or 0,
                source.offset() or 0,
                exc.args[0].str(),
            )
            error = f"the producer refused the result ({len(scored.value)} bytes): {exc.args[0].str()}"
            self._dead_letter(source, RESULT_REJECTED, error, None, failed_at, ack)

    def _publish_shadow(self, records: list[tuple[bytes, bytes]]) -> None:
        """A challenger's scores: a measurement, never the decision. Their acknowledgements hold no offsets
        (at-least-once loses one that fails, with a log line); inside an exactly-once transaction they commit
        with the batch or not at all."""
        topic = self._shadow or ""
        try:
            for key, value in records:
                self._produce(topic, value, key, None, self._shadow_delivered)
        except PublishError as exc:
            if self._failure_log.ready():
                log.warning("challenger scores not published: %s", exc)

    def _shadow_delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None and self._failure_log.ready():
            log.warning("a challenger score was not delivered to %s (%s)", msg.topic(), err.str())

    def _dead_letter(
        self, msg: Message, reason: str, error: str, field: str | None, failed_at: dt.datetime, ack: DeliveryCallback
    ) -> None:
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        info = DeadLetterInfo(
            reason=reason,
            error=error,
            field=field,
            topic=topic,
            partition=partition,
            offset=offset,
            failed_at=failed_at,
        )
        headers: Headers = [*info.headers()]
        self._produce(self._dlq, msg.value(), msg.key(), headers, ack)

    def retry_failed(self) -> None:
        """Produce again what failed after the producer's own retries (called from the loop); first replace
        the producer if it can no longer deliver.

        Raises:
            PublishError: a failure no retry can mend; the worker must stop (its offsets stay uncommitted).
        """
        self.check_stopped()
        if self._gone is not None and self._renew is not None:
            self._replace_producer(self._gone)
        retries, self._retries = self._retries, []
        if retries:
            time.sleep(_RETRY_PAUSE_S)  # the broker is likely down: do not spin
        for pending in retries:
            acks = pending[4]
            if isinstance(acks, _BatchAcks) and not acks.still_ours:
                acks.settled_elsewhere()  # its partitions went while it waited (see _failed)
                continue
            self._produce(*pending)

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

    def check_stopped(self) -> None:
        """Raises PublishError when a failure no retry can mend was reported."""
        if self._stop is not None:
            raise self._stop

    def refused(self, refusal: Refusal) -> None:
        """Record that the broker refuses a delivery for a missing ACL (logged every half minute)."""
        self.refusal = refusal
        if _REFUSAL_LOG.ready(refusal.resource, _REFUSAL_LOG_S):
            log.error("%s", refusal.line())

    def delivered(self, topic: str) -> None:
        """A delivery to ``topic`` succeeded: a refusal of that topic is over (the ACL was granted). A dead letter
        delivered while the output is refused says nothing about the output."""
        if self.refusal is not None and self.refusal.covers(topic):
            log.warning("authorised again: %s on %s accepted; resuming", self.refusal.operation, self.refusal.resource)
            self.refusal = None

    def _failed(self, err: KafkaError, msg: Message, acks: _BatchAcks) -> None:
        is_dead_letter = msg.topic() == self._dlq
        if (refusal := refusal_of(err, msg.topic() or "")) is not None:
            self.refused(refusal)
            if self._requeue:
                self._retries.append((msg.topic() or "", msg.value(), msg.key(), msg.headers(), acks))
            return  # exactly-once: the transaction's commit fails; the guarantee waits for the grant
        verdict = delivery_verdict(err, is_dead_letter)
        if verdict is Verdict.DEAD_LETTER and (source := acks.source_of(msg)) is not None:
            log.warning(
                "the broker refused a result for %s [%d] @ %d (%s): dead-lettering its event",
                source.topic(),
                source.partition() or 0,
                source.offset() or 0,
                err.str(),
            )
            error = f"the broker refused the result ({len(msg.value() or b'')} bytes): {err.str()}"
            if not self._requeue:
                # exactly-once: the transaction aborts; when the batch is scored again, this event is dead-lettered
                self._refused[_position(source)] = error
                return
            self._dead_letter(source, RESULT_REJECTED, error, None, dt.datetime.now(dt.UTC), acks)
            return
        if not self._requeue and verdict is Verdict.RETRY:
            return  # exactly-once: the transaction's commit fails and the batch is scored again
        if verdict is not Verdict.RETRY:
            what = "dead letter" if is_dead_letter else "result"
            self._stop = PublishError(
                f"cannot publish a {what} to topic {msg.topic()!r}: {err.str()}; stopping with its offsets uncommitted"
            )
            return
        if not acks.still_ours:
            # Every partition of its batch was revoked or lost: its offsets will never be stored by this worker,
            # and the partitions' next owner scores the events again from the committed offsets. Producing it
            # again would only add a copy (after a frozen broker: the original landing late, this one, the rescore).
            acks.settled_elsewhere()
            if self._failure_log.ready():
                log.warning(
                    "delivery to %s failed (%s); not produced again: its partitions were revoked or lost, and "
                    "their next owner scores them again",
                    msg.topic(),
                    err.str(),
                )
            return
        self._retries.append((msg.topic() or "", msg.value(), msg.key(), msg.headers(), acks))
        if err.fatal() or err.code() in _PRODUCER_GONE:
            self._gone = err
        if self._failure_log.ready():
            log.warning("delivery to %s failed (%s); producing it again", msg.topic(), err.str())

    def _produce(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None, on_delivery: DeliveryCallback
    ) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, headers=headers, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: serve delivery reports, then try again
                self.producer.poll(0.05)
            except KafkaException as exc:
                if (refusal := refusal_of(exc.args[0], topic)) is not None:
                    # librdkafka refuses at once a topic it has learnt it may not write to
                    self.refused(refusal)
                    if not self._requeue:
                        raise NotAuthorized(refusal) from exc
                    self._retries.append((topic, value, key, headers, on_delivery))
                    return
                # librdkafka refuses at once a topic it has learnt does not exist (after its metadata wait)
                if exc.args[0].code() not in _MISSING_TOPIC:
                    raise
                what = (
                    "dead letter" if topic == self._dlq else "challenger score" if topic == self._shadow else "result"
                )
                raise PublishError(
                    f"cannot publish a {what} to topic {topic!r}: {exc.args[0].str()}; "
                    "stopping with its offsets uncommitted"
                ) from exc


# what to produce again: topic, value, key, headers, and the delivery callback of its batch
_Pending = tuple[str, bytes | None, bytes | None, Headers | None, DeliveryCallback]


def _position(msg: Message) -> tuple[str, int, int]:
    return (msg.topic() or "", msg.partition() or 0, msg.offset() or 0)


class _BatchAcks:
    """The delivery callback of one batch's messages: counts acknowledgements, hands failures back.

    An object, not a closure: a closure that passes itself on for its retries refers to itself, and that cycle
    (holding the batch) outlived every batch until a full garbage collection, which a scoring worker rarely
    runs; the soak test saw the resident set creep up by it.
    """

    __slots__ = ("_batch", "_messages", "_publisher", "_scored")

    def __init__(
        self, publisher: BatchPublisher, batch: InFlightBatch, messages: Sequence[Message], scored: list[ScoredMessage]
    ) -> None:
        self._publisher = publisher
        self._batch = batch
        self._messages = messages
        self._scored = scored

    def source_of(self, result: Message) -> Message | None:
        """The consumed message a produced result was scored from (a scan: only ever on a refused result)."""
        value = result.value()
        for scored in self._scored:
            if scored.value == value:
                return self._messages[scored.index]
        return None

    @property
    def still_ours(self) -> bool:
        """False once every input partition of the batch was revoked or lost (its offsets forgotten)."""
        return bool(self._batch.next_offsets)

    def settled_elsewhere(self) -> None:
        """A delivery given up because its events are now another member's to score (see ``still_ours``)."""
        self._batch.pending -= 1

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self._batch.pending -= 1
            if self._publisher.refusal is not None:
                self._publisher.delivered(msg.topic() or "")
            return
        self._publisher._failed(err, msg, self)
