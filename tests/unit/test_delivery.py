"""The batch publisher re-produces failed deliveries, through a new producer once the old one is fenced."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from consumer.core.engine import BatchOutcome, ScoredMessage
from consumer.core.offsets import InFlightBatch
from consumer.kafka import delivery
from consumer.kafka.clients import DeliveryCallback, Headers, Sink
from consumer.kafka.delivery import BatchPublisher
from schemas.dead_letter import DeadLetterInfo


class FakeProducer:
    """A ``Sink`` that answers every delivery with ``error`` (None = acknowledged) when polled or flushed."""

    def __init__(self, error: KafkaError | None) -> None:
        self.error = error
        self.pending: list[tuple[Message, DeliveryCallback]] = []
        self.produced = 0
        self.purged = False

    def produce(
        self,
        topic: str,
        value: str | bytes | None = None,
        key: str | bytes | None = None,
        *,
        on_delivery: DeliveryCallback | None = None,
        headers: Headers | None = None,
    ) -> None:
        assert on_delivery is not None
        self.produced += 1
        self.pending.append((Message(topic=topic, value=_bytes(value), key=_bytes(key), headers=headers), on_delivery))

    def poll(self, timeout: float = 0.0) -> int:
        pending, self.pending = self.pending, []
        for msg, on_delivery in pending:
            on_delivery(self.error, msg)
        return len(pending)

    def flush(self, timeout: float = 0.0) -> int:
        self.poll()
        return 0

    def purge(self) -> None:
        self.purged = True

    # not transactional: the publisher never calls these
    def init_transactions(self, timeout: float = -1) -> None: ...

    def begin_transaction(self) -> None: ...

    def send_offsets_to_transaction(
        self, positions: list[TopicPartition], group_metadata: Any, timeout: float = -1
    ) -> None: ...

    def commit_transaction(self, timeout: float = -1) -> None: ...

    def abort_transaction(self, timeout: float = -1) -> None: ...


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def dead_letter_info(msg: Message) -> DeadLetterInfo:
    headers = msg.headers() or []
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    return DeadLetterInfo.from_headers([(name, _bytes(value)) for name, value in pairs])


def never_renewed() -> Sink:
    pytest.fail("not fenced: no new producer")


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "_RETRY_PAUSE_S", 0.0)


def _publish(publisher: BatchPublisher, count: int) -> InFlightBatch:
    batch = InFlightBatch({("in", 0): count}, pending=count)
    outcome = BatchOutcome(scored=[ScoredMessage(i, b"app-%d" % i, b"result", 0) for i in range(count)])
    publisher.publish(batch, [], outcome)
    return batch


def test_a_fenced_producer_is_replaced_and_every_delivery_is_acknowledged_by_the_new_one() -> None:
    fenced, fresh = FakeProducer(KafkaError(KafkaError.PRODUCER_FENCED)), FakeProducer(None)
    publisher = BatchPublisher(fenced, "out", "dlq", renew=lambda: fresh)
    batch = _publish(publisher, 3)
    fenced.flush()
    assert batch.pending == 3 and publisher.waiting_retries == 3
    publisher.retry_failed()
    assert fenced.purged and publisher.producer is fresh
    fresh.flush()
    assert batch.done and fresh.produced == 3


def test_a_timed_out_delivery_is_retried_on_the_same_producer() -> None:
    producer = FakeProducer(KafkaError(KafkaError._MSG_TIMED_OUT))
    publisher = BatchPublisher(producer, "out", "dlq", renew=never_renewed)
    batch = _publish(publisher, 2)
    producer.flush()
    publisher.retry_failed()
    assert publisher.producer is producer and producer.produced == 4
    producer.error = None
    producer.flush()
    assert batch.done


def test_without_a_way_to_renew_the_fenced_producer_is_kept() -> None:
    fenced = FakeProducer(KafkaError(KafkaError.PRODUCER_FENCED))
    publisher = BatchPublisher(fenced, "out", "dlq")
    _publish(publisher, 1)
    fenced.flush()
    publisher.retry_failed()
    assert publisher.producer is fenced and not fenced.purged


def test_a_published_batch_is_freed_by_reference_counting_alone() -> None:
    # A worker runs the cycle collector rarely: a batch kept alive by a reference cycle is a slow leak.
    gc.disable()
    try:
        producer = FakeProducer(KafkaError(KafkaError._MSG_TIMED_OUT))
        publisher = BatchPublisher(producer, "out", "dlq")
        batch = _publish(publisher, 2)
        producer.flush()
        publisher.retry_failed()  # through the failure path too
        producer.error = None
        producer.flush()
        assert batch.done
        freed = weakref.ref(batch)
        del batch
        assert freed() is None
    finally:
        gc.enable()


def test_inside_a_transaction_a_purged_delivery_is_never_produced_again() -> None:
    # After abort_transaction librdkafka reports the purged messages as failed; producing them again would put
    # them outside any transaction (librdkafka refuses: _STATE) or into the next one beside their rescored twins.
    producer = FakeProducer(KafkaError(KafkaError._PURGE_QUEUE))
    publisher = BatchPublisher(producer, "out", "dlq", renew=None, requeue=False)
    batch = _publish(publisher, 3)
    producer.poll()
    publisher.retry_failed()
    assert producer.produced == 3
    assert publisher.waiting_retries == 0
    assert batch.pending == 3, "no failed delivery counts as acknowledged"


def consumed(topic: str, value: bytes, key: bytes) -> Message:
    return Message(topic=topic, partition=4, offset=17, value=value, key=key)


def test_a_result_the_broker_refuses_as_too_large_becomes_a_dead_letter_of_its_event() -> None:
    producer = FakeProducer(None)
    publisher = BatchPublisher(producer, "out", "dlq")
    source = consumed("in", b"event-bytes", b"app-0")
    batch = InFlightBatch({("in", 4): 18}, pending=1)
    publisher.publish(batch, [source], BatchOutcome(scored=[ScoredMessage(0, b"app-0", b"huge-result", 0)]))
    result, on_delivery = producer.pending.pop()
    on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), result)
    ((dead, _),) = producer.pending
    assert (dead.topic(), dead.value(), dead.key()) == ("dlq", b"event-bytes", b"app-0")
    info = dead_letter_info(dead)
    assert (info.reason, info.topic, info.partition, info.offset) == ("result_rejected", "in", 4, 17)
    assert "the broker refused the result (11 bytes)" in info.error
    producer.poll()
    assert batch.done and publisher.waiting_retries == 0


@pytest.mark.parametrize(
    ("code", "is_dead_letter", "verdict"),
    [
        (KafkaError._MSG_TIMED_OUT, False, delivery.Verdict.RETRY),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, False, delivery.Verdict.RETRY),
        (KafkaError.MSG_SIZE_TOO_LARGE, False, delivery.Verdict.DEAD_LETTER),
        (KafkaError.MSG_SIZE_TOO_LARGE, True, delivery.Verdict.STOP),
        (KafkaError.UNKNOWN_TOPIC_OR_PART, False, delivery.Verdict.STOP),
    ],
)
def test_delivery_verdicts(code: int, is_dead_letter: bool, verdict: delivery.Verdict) -> None:
    assert delivery.delivery_verdict(KafkaError(code), is_dead_letter) is verdict


def test_a_missing_output_topic_stops_the_worker_with_the_topic_named() -> None:
    producer = FakeProducer(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    publisher = BatchPublisher(producer, "scores", "dlq")
    _publish(publisher, 1)
    producer.poll()
    with pytest.raises(delivery.PublishError, match="topic 'scores'"):
        publisher.retry_failed()


def test_inside_a_transaction_a_refused_result_is_dead_lettered_when_the_batch_is_scored_again() -> None:
    producer = FakeProducer(None)
    publisher = BatchPublisher(producer, "out", "dlq", renew=None, requeue=False)
    source = consumed("in", b"event-bytes", b"app-0")
    outcome = BatchOutcome(scored=[ScoredMessage(0, b"app-0", b"huge-result", 0)])
    publisher.publish(InFlightBatch({("in", 4): 18}, pending=1), [source], outcome)
    result, on_delivery = producer.pending.pop()
    on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), result)
    assert producer.pending == [], "nothing is produced outside the aborted transaction"
    publisher.publish(InFlightBatch({("in", 4): 18}, pending=1), [source], outcome)
    ((dead, _),) = producer.pending
    assert dead.topic() == "dlq"
    assert dead_letter_info(dead).reason == "result_rejected"


class SizeLimitedProducer(FakeProducer):
    """Refuses at once, like confluent-kafka's ``produce()`` above the producer's ``message.max.bytes``."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(None)
        self.max_bytes = max_bytes

    def produce(
        self,
        topic: str,
        value: str | bytes | None = None,
        key: str | bytes | None = None,
        *,
        on_delivery: DeliveryCallback | None = None,
        headers: Headers | None = None,
    ) -> None:
        if len(_bytes(value) or b"") > self.max_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Message size too large"))
        super().produce(topic, value, key, on_delivery=on_delivery, headers=headers)


@pytest.mark.parametrize("requeue", [True, False], ids=["at_least_once", "exactly_once"])
def test_a_result_the_client_refuses_for_size_is_dead_lettered_with_the_input_bytes(requeue: bool) -> None:
    producer = SizeLimitedProducer(max_bytes=len(b"event-bytes"))
    publisher = BatchPublisher(producer, "out", "dlq", renew=None, requeue=requeue)
    source = consumed("in", b"event-bytes", b"app-0")
    batch = InFlightBatch({("in", 4): 18}, pending=1)
    publisher.publish(batch, [source], BatchOutcome(scored=[ScoredMessage(0, b"app-0", b"a-result-too-large", 0)]))
    ((dead, _),) = producer.pending
    assert (dead.topic(), dead.value(), dead.key()) == ("dlq", b"event-bytes", b"app-0")
    info = dead_letter_info(dead)
    assert (info.reason, info.topic, info.partition, info.offset) == ("result_rejected", "in", 4, 17)
    assert "the producer refused the result (18 bytes)" in info.error
    producer.poll()
    assert batch.done and publisher.waiting_retries == 0
