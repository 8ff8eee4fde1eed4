"""The two delivery guarantees as two strategies the run loop holds one of.

``AtLeastOnce``: results and dead letters are produced without waiting; input offsets are stored only once the
broker acknowledged every delivery of their batch and of every batch before it; librdkafka's auto-commit commits
what was stored; revoke and shutdown flush and commit synchronously. A delivery that fails after the producer's
own retries is produced again (see :mod:`consumer.kafka.delivery`), so an outage delays results and loses none.
At most ``max_unacknowledged`` batches are published and unacknowledged: past that the worker waits for the
broker's acknowledgements, and pauses its partitions while they do not come. That bounds what a crash or a lost
session can score twice: those batches, and what was acknowledged since the last auto-commit (every 200 ms).

``ExactlyOnce``: each batch's results, dead letters and input offsets commit in one transaction. A delivery that
fails inside it is never produced again on its own (that would put it outside its transaction, or into the next
one beside its own rescored twin): the commit fails, the transaction is aborted, and the batch is rewound and
scored again in a new transaction. A producer fenced by a newer instance with its transactional id is replaced
by a new one (which fences the other in turn) and every assigned partition is rewound to its committed offset.
So is a producer whose transactional call still fails after twice the transaction timeout although the broker
is back: librdkafka can leave a request queued on a coordinator connection that outlived a broker pause, and the
replacement's ``init_transactions`` settles the open transaction on the coordinator (commits or aborts it; the
committed offsets say which).

A missing ACL (the broker refuses Write on the output or dead-letter topic, or on the transactional id) is waited
out, never fatal: one log line names the resource and the permission, the worker reports itself not ready (and
stays alive), nothing is committed, and it goes on by itself once the ACL is granted. At-least-once pauses its
partitions meanwhile and keeps what was refused for its retries; exactly-once aborts the transaction, rewinds
the batch and tries again with backoff; a refused transactional id is retried with a new producer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, KafkaError, KafkaException, Message, TopicPartition

from consumer.core.engine import BatchOutcome
from consumer.core.offsets import InFlightBatch, OffsetTracker
from consumer.kafka.clients import Sink, Source, first_offsets
from consumer.kafka.delivery import BatchPublisher, NotAuthorized, PublishError, Refusal, refusal_of

log = logging.getLogger(__name__)
_SHUTDOWN_FLUSH_S = 8.0
_TXN_TIMEOUT_S = 30.0
_CALL_S = 5.0  # one attempt of a transactional call; a retriable failure is retried (and reported) after it
_FENCED_WINDOW_S = 60.0
_FENCED_LIMIT = 4
# Before replacing a producer fenced again within the window: an intruder's init_transactions, retried every half
# second while our replacement's transaction is open, fences each replacement in turn unless it waits its turn.
_FENCED_BACKOFF_S = (0.0, 1.0, 2.0)
# produce() on a producer already in its fatal state raises _FATAL without the fatal flag set on the error
_UNUSABLE = {KafkaError._FATAL, KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
_ACK_WAIT_S = 1.0  # at_least_once: how long a full window of unacknowledged batches waits before holding
_HELD_POLL_S = 0.1
_GRANT_BACKOFF_S = (1.0, 2.0, 5.0)  # while an ACL is missing: an operator's grant is awaited, not a broker
Report = Callable[[InFlightBatch], None]
NewSink = Callable[[], Sink]  # a new producer, configured for this worker
Stalled = Callable[[bool], None]  # True: waiting on the broker (not ready, still alive); False: going again


class _Wedged(Exception):
    """A transactional call kept failing (retriably) for longer than the producer can be trusted to recover."""


class Guarantee(Protocol):
    """What the loop asks of a guarantee; every method runs on the loop's thread."""

    name: str

    def start(self) -> None:
        """Make the producer ready (exactly-once: initialise transactions, retrying while the broker is down)."""

    def tick(self, consumer: Source) -> None:
        """Before each consume: serve delivery reports, re-produce failures, store what is acknowledged."""

    def publish(self, consumer: Source, batch: InFlightBatch, messages: Sequence[Message], out: BatchOutcome) -> None:
        """Produce a scored batch; ``messages`` are the consumed messages ``out``'s indices point into."""

    def revoked(self, consumer: Source, partitions: Sequence[TopicPartition]) -> None:
        """Partitions are being taken away (gracefully): settle what belongs to them."""

    def lost(self, consumer: Source, partitions: Sequence[TopicPartition]) -> None:
        """Partitions were taken away without a revoke (session lost): forget them."""

    def drain(self, consumer: Source) -> None:
        """Shutting down: settle everything in flight."""


class AtLeastOnce:
    name = "at_least_once"

    def __init__(
        self,
        new_sink: NewSink,
        output: str,
        dlq: str,
        report: Report,
        *,
        stalled: Stalled = lambda waiting: None,
        shadow: str | None = None,
        max_unacknowledged: int = 4,
    ) -> None:
        self._tracker = OffsetTracker()
        self._report = report
        self._stalled = stalled
        self._max_unacknowledged = max_unacknowledged
        # partitions paused while the broker refuses a delivery (an ACL) or acknowledges none (an outage)
        self._held: set[tuple[str, int]] = set()
        self._awaiting_acks = False
        # a producer fenced after an outage is replaced (only an idempotent one can be; a transactional one never is)
        self._publisher = BatchPublisher(new_sink(), output, dlq, new_sink, shadow=shadow)

    def start(self) -> None:
        return None

    def tick(self, consumer: Source) -> None:
        # while held, wait for the broker's answers here rather than spin on consume()'s short timeout
        self._publisher.producer.poll(_HELD_POLL_S if self._held else 0)
        self._publisher.retry_failed()
        self._release(consumer)
        self._awaiting_acks = self._awaiting_acks and len(self._tracker) >= self._max_unacknowledged
        self._hold(consumer)

    def publish(self, consumer: Source, batch: InFlightBatch, messages: Sequence[Message], out: BatchOutcome) -> None:
        self._tracker.add(batch)
        self._publisher.publish(batch, messages, out)
        self._await_acks(consumer)
        self._hold(consumer)

    def _await_acks(self, consumer: Source) -> None:
        """With ``max_unacknowledged`` batches unacknowledged, serve delivery reports until one completes; if none
        does within ``_ACK_WAIT_S`` (a broker slow or away), hold the partitions until one does."""
        deadline = time.monotonic() + _ACK_WAIT_S
        while len(self._tracker) >= self._max_unacknowledged and time.monotonic() < deadline:
            self._publisher.producer.poll(0.01)
            self._publisher.retry_failed()
            self._release(consumer)
        if len(self._tracker) >= self._max_unacknowledged and not self._awaiting_acks:
            log.warning(
                "%d batches await the broker's acknowledgement for over %.0f s: consuming nothing more until it "
                "answers",
                len(self._tracker),
                _ACK_WAIT_S,
            )
        self._awaiting_acks = len(self._tracker) >= self._max_unacknowledged

    def _hold(self, consumer: Source) -> None:
        """Consume nothing more while a delivery is refused for a missing ACL (what was refused waits in the
        retries, its offsets unstored; reported not ready) or while ``max_unacknowledged`` batches await the
        broker; resume once a delivery succeeds again."""
        refused = self._publisher.refusal is not None
        if refused or self._awaiting_acks:
            new = [tp for tp in consumer.assignment() if (tp.topic, tp.partition) not in self._held]
            if new:
                consumer.pause(new)  # librdkafka drops what it prefetched and fetches it again on resume
                self._held |= {(tp.topic, tp.partition) for tp in new}
            if refused:
                self._stalled(True)
        elif self._held:
            held = [tp for tp in consumer.assignment() if (tp.topic, tp.partition) in self._held]
            self._held.clear()
            if held:
                consumer.resume(held)
            self._stalled(False)

    def revoked(self, consumer: Source, partitions: Sequence[TopicPartition]) -> None:
        self._flush_and_commit(consumer, _SHUTDOWN_FLUSH_S)
        self._forget(consumer, partitions)

    def lost(self, consumer: Source, partitions: Sequence[TopicPartition]) -> None:
        self._forget(consumer, partitions)

    def _forget(self, consumer: Source, partitions: Sequence[TopicPartition]) -> None:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._tracker.forget_partitions(gone)
        # librdkafka keeps a partition paused by the application across a re-assignment: resumed as it goes, so
        # that the same partition given back after a lost session is consumed again
        held = [tp for tp in partitions if (tp.topic, tp.partition) in self._held]
        if held:
            try:
                consumer.resume(held)
            except KafkaException as exc:
                log.debug("resuming %d partition(s) as they go: %s", len(held), exc.args[0].str())
        self._held -= gone

    def drain(self, consumer: Source) -> None:
        log.info("flushing %d in-flight deliveries", self._tracker.in_flight)
        self._flush_and_commit(consumer, _SHUTDOWN_FLUSH_S)

    def _release(self, consumer: Source) -> None:
        offsets, done = self._tracker.releasable()
        if offsets:
            consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        for batch in done:
            self._report(batch)

    def _flush_and_commit(self, consumer: Source, timeout: float) -> None:
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


class ExactlyOnce:
    name = "exactly_once"

    def __init__(
        self,
        new_sink: NewSink,
        output: str,
        dlq: str,
        report: Report,
        *,
        reset: str = "earliest",
        stalled: Stalled = lambda waiting: None,
        wedged_after_s: float = 2 * _TXN_TIMEOUT_S,
        transactional_id: str = "",
        stopping: Callable[[], bool] = lambda: False,
        shadow: str | None = None,
    ) -> None:
        self._new_sink = new_sink
        self._shadow = shadow
        self._stopping = stopping  # a stop request ends the wait in start()
        self._transactional_id = transactional_id
        self._refusals = 0  # consecutive attempts the broker refused for a missing ACL
        self._wedged_after_s = wedged_after_s
        self._stalled = stalled
        self._fenced_at: list[float] = []
        self._no_commit_offset = OFFSET_BEGINNING if reset == "earliest" else OFFSET_END
        self._output, self._dlq = output, dlq
        self._report = report
        self._publisher = self._new_publisher()

    @property
    def producer(self) -> Sink:
        return self._publisher.producer  # the one producer of this guarantee: replaced only with its publisher

    def start(self) -> None:
        """Initialise transactions, retrying with backoff while the coordinator cannot be reached.

        A transactional id the principal may not use (no ACL) is waited out: logged, not ready, and tried again
        with a new producer (the refusal is fatal to the old one) until the ACL is granted.

        Raises:
            KafkaException: a fatal error other than a missing ACL.
        """
        waited = False
        for attempt in range(1_000_000):
            if attempt and self._stopping():
                log.info("stop requested while transactions were not initialised yet")
                return
            try:
                # Short attempts: between them the producer's error callback says why (a refused password, an
                # untrusted certificate: librdkafka reports those only there) and the worker stays alive.
                self.producer.init_transactions(_CALL_S)
                if self._refusals:
                    log.warning("authorised again: transactional id %s accepted; resuming", self._transactional_id)
                    self._granted()
                elif waited:
                    self._stalled(False)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if (refusal := refusal_of(error, self._transactional_id)) is not None:
                    self._wait_for_grant(refusal)
                    self.producer.purge()
                    self._publisher = self._new_publisher()
                    continue
                if error.fatal() or not error.retriable():
                    raise
                self.producer.poll(0)
                self._stalled(True)
                waited = True
                pause = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
                log.warning("cannot initialise transactions yet (%s); retrying in %.1f s", error.str(), pause)
                time.sleep(pause)

    def tick(self, consumer: Source) -> None:
        self.producer.poll(0)

    def publish(self, consumer: Source, batch: InFlightBatch, messages: Sequence[Message], out: BatchOutcome) -> None:
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items()]
        group = consumer.consumer_group_metadata()
        try:
            try:
                self.producer.begin_transaction()
                self._publisher.publish(batch, messages, out)
                self._until_done(lambda: self.producer.send_offsets_to_transaction(offsets, group, _CALL_S), "offsets")
                self._until_done(lambda: self.producer.commit_transaction(_CALL_S), "commit")
            except NotAuthorized as refused:
                # produce() refused at once: the transaction cannot commit, its batch is scored again later
                self._failed(consumer, messages, None, refused.refusal)
                return
            except KafkaException as exc:
                self._failed(consumer, messages, exc.args[0])
                return
        except _Wedged as wedged:
            log.warning("%s: replacing the transactional producer and rewinding to the committed offsets", wedged)
            self._start_over(consumer)
            self._stalled(False)
            return
        if self._refusals:
            self._granted()
        self._report(batch)

    def _failed(
        self, consumer: Source, messages: Sequence[Message], error: KafkaError | None, refusal: Refusal | None = None
    ) -> None:
        """A transaction failed: abort and rescore it (after a pause, when an ACL is missing), or replace a
        producer that can do nothing more."""
        if error is not None and error.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            self._start_over(consumer)  # start() waits for the grant with a new producer; not a fence
            return
        refusal = refusal or self._publisher.refusal
        if refusal is None and error is not None:
            # the transaction's error names no topic: the ones this batch produced to (the output, mostly)
            refusal = refusal_of(error, " or ".join(sorted(self._publisher.topics)) or self._output)
        # _STATE from produce(): a record of this transaction was refused and librdkafka awaits the abort
        if error is None or error.txn_requires_abort() or error.code() == KafkaError._STATE:
            try:
                self._abort(consumer, messages, error.str() if error else refusal.error if refusal else "")
            except KafkaException as exc:
                # Fenced while aborting (the commit failed because a newer instance took the id over):
                # replaced like a producer fenced at any other call.
                if not _producer_unusable(exc.args[0]):
                    raise
                self._replace_fenced(consumer, exc.args[0])
                return
            if refusal is not None:
                self._wait_for_grant(refusal)
            self._publisher.check_stopped()  # a refusal no rescoring mends (a missing topic) stops the worker
        elif _producer_unusable(error):
            self._replace_fenced(consumer, error)
        else:
            raise KafkaException(error)

    def revoked(self, consumer: Source, partitions: Sequence[TopicPartition]) -> None:
        return None  # every batch committed in its own transaction: nothing is in flight between batches

    def lost(self, consumer: Source, partitions: Sequence[TopicPartition]) -> None:
        return None

    def drain(self, consumer: Source) -> None:
        return None

    def _new_publisher(self) -> BatchPublisher:
        # requeue=False: inside a transaction a failed delivery fails the commit; the batch is rescored instead.
        return BatchPublisher(self._new_sink(), self._output, self._dlq, renew=None, requeue=False, shadow=self._shadow)

    def _until_done(self, call: Callable[[], object], what: str) -> None:
        """Run a transactional call, calling it again for as long as it fails with a retriable error (a broker
        that is slow or down: librdkafka documents these calls as safe to repeat); meanwhile the worker reports
        itself not ready. Anything else propagates; so does a call still failing after ``wedged_after_s``, as
        :class:`_Wedged`."""
        attempt, started = 0, time.monotonic()
        while True:
            try:
                call()
                break
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or error.txn_requires_abort() or error.fatal():
                    raise
                self._stalled(True)
                if time.monotonic() - started > self._wedged_after_s:
                    raise _Wedged(
                        f"transaction {what} still not confirmed after {self._wedged_after_s:.0f} s ({error.str()})"
                    ) from exc
                if attempt % 6 == 0:
                    log.warning("transaction %s not confirmed (%s); retrying", what, error.str())
                time.sleep(_BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)])
                attempt += 1
        if attempt:
            self._stalled(False)

    def _wait_for_grant(self, refusal: Refusal) -> None:
        """An ACL is missing: say which (every half minute), report not ready, wait before trying again."""
        self._publisher.refused(refusal)
        self._stalled(True)
        time.sleep(_GRANT_BACKOFF_S[min(self._refusals, len(_GRANT_BACKOFF_S) - 1)])
        self._refusals += 1
        self._stalled(True)  # alive: the wait is deliberate

    def _granted(self) -> None:
        self._refusals = 0
        self._publisher.refusal = None
        self._stalled(False)

    def _abort(self, consumer: Source, messages: Sequence[Message], reason: str) -> None:
        if self._refusals or self._publisher.refusal is not None:
            log.debug("transaction aborted (%s); rewinding the batch to score it again", reason)
        else:
            log.warning("transaction aborted (%s); rewinding the batch to score it again", reason)
        self._until_done(lambda: self.producer.abort_transaction(_CALL_S), "abort")
        for (topic, partition), offset in first_offsets(messages).items():
            consumer.seek(TopicPartition(topic, partition, offset))

    def _replace_fenced(self, consumer: Source, error: KafkaError) -> None:
        """A newer producer with our transactional id took over (or the producer hit a fatal error): its open
        transaction is aborted by the coordinator. Start over from the group's committed offsets."""
        now = time.monotonic()
        self._fenced_at = [t for t in self._fenced_at if now - t < _FENCED_WINDOW_S] + [now]
        if len(self._fenced_at) >= _FENCED_LIMIT:
            # A zombie is fenced once (and a replacement racing an intruder's retried init can be fenced again, so
            # each later replacement waits longer first); fenced again and again, another live instance shares
            # our transactional id.
            raise PublishError(
                f"fenced {_FENCED_LIMIT} times within {_FENCED_WINDOW_S:.0f} s ({error.str()}): "
                "another live replica uses this worker's transactional id; give each replica its "
                "own consumer.instance_id"
            )
        log.warning(
            "the transactional producer was fenced or failed fatally (%s): replacing it and rewinding "
            "to the committed offsets",
            error.str(),
        )
        time.sleep(_FENCED_BACKOFF_S[min(len(self._fenced_at), len(_FENCED_BACKOFF_S)) - 1])
        self._start_over(consumer)

    def _start_over(self, consumer: Source) -> None:
        """A new producer with the same transactional id (its ``init_transactions`` fences the old one and settles
        its open transaction), then every assigned partition back to the group's committed offset."""
        self.producer.purge()
        self._publisher = self._new_publisher()
        self.start()
        assigned = consumer.assignment()
        if not assigned:
            return
        for tp in consumer.committed(assigned, timeout=_TXN_TIMEOUT_S):
            # No commit yet: the group's reset policy decides where the partition starts again.
            offset = tp.offset if tp.offset >= 0 else self._no_commit_offset
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))


def _producer_unusable(error: KafkaError) -> bool:
    """True when this transactional producer can do nothing more (fenced, or in librdkafka's fatal state)."""
    return bool(error.fatal()) or error.code() in _UNUSABLE
