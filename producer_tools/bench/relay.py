"""The relay baseline of ``crm-scorer bench``: the scorer's Kafka path with nothing in between.

``python -m producer_tools.bench.relay`` joins a group with exactly the consumer and producer settings the scorer
would use (``Settings.librdkafka`` of the same configuration: fetch wait, batch size and timeout, acks, linger,
compression, idempotence), consumes batches and produces, for each message, its key and an 8-byte value: the
input message's own timestamp (so a subscriber can time it), with no decoding, scoring or encoding. Offsets are
stored once every delivery of a batch and of the batches before it was acknowledged, and committed by
librdkafka's auto-commit, as the scorer's at-least-once does. What it achieves is the broker-and-client floor
the scorer's own throughput and latency are measured against. SIGTERM stops it (flush, commit, leave).
"""

from __future__ import annotations

import argparse
import collections
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from consumer.kafka.clients import next_offsets  # the scorer's own offset arithmetic
from consumer.settings import load_settings

_TIMESTAMP = 8  # bytes of the relayed value


class _Batch:
    __slots__ = ("offsets", "remaining")

    def __init__(self, offsets: dict[tuple[str, int], int], remaining: int) -> None:
        self.offsets, self.remaining = offsets, remaining


def relay(bootstrap: str, source: str, target: str, group: str, config: Path | None, stop: list[bool]) -> int:
    """Relay ``source`` to ``target`` until ``stop[0]``; returns the messages relayed."""
    settings = load_settings(config, kafka={"bootstrap_servers": bootstrap}, consumer={"group_id": group})
    consumer = Consumer(settings.librdkafka("consumer", 0))
    producer = Producer(settings.librdkafka("producer", 0))
    pending: collections.deque[_Batch] = collections.deque()
    relayed = 0

    def acked(batch: _Batch) -> Callable[[KafkaError | None, Message], None]:
        def report(err: KafkaError | None, _msg: Message) -> None:
            batch.remaining -= 1  # a failure is not retried: the baseline measures the happy path

        return report

    consumer.subscribe([source])
    batch_size, timeout = settings.consumer.batch_size, settings.consumer.batch_timeout_s
    try:
        while not stop[0]:
            messages = [m for m in consumer.consume(batch_size, timeout) if m.error() is None]
            producer.poll(0)
            _release(consumer, pending)
            if not messages:
                continue
            batch = _Batch(next_offsets(messages), len(messages))
            pending.append(batch)
            report = acked(batch)
            for m in messages:
                stamp = m.timestamp()[1].to_bytes(_TIMESTAMP, "big", signed=True)
                while True:
                    try:
                        producer.produce(target, stamp, m.key(), on_delivery=report)
                        break
                    except BufferError:
                        producer.poll(0.05)
            relayed += len(messages)
        producer.flush(10)
        _release(consumer, pending)
    finally:
        consumer.close()
    return relayed


def _release(consumer: Consumer, pending: collections.deque[_Batch]) -> None:
    while pending and pending[0].remaining <= 0:
        batch = pending.popleft()
        consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in batch.offsets.items()])


def relayed_time_ms(value: bytes) -> int:
    """The input timestamp a relayed value carries."""
    return int.from_bytes(value[:_TIMESTAMP], "big", signed=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m producer_tools.bench.relay", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", required=True)
    parser.add_argument("--group-id", required=True)
    parser.add_argument("--config", type=Path, default=None, help="the scorer.yaml whose Kafka settings to use")
    args = parser.parse_args(argv)
    stop = [False]

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    relayed = relay(args.bootstrap_servers, args.input_topic, args.output_topic, args.group_id, args.config, stop)
    print(f"relayed {relayed} messages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
