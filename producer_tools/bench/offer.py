"""The latency phase's producer: prebuilt messages stamped with the wall clock as they go, at a steady rate.

Building and encoding an event costs more than sending it; at thousands of events per second that work (and the
tools' publisher, which waits for its tokens in a spinning ``poll``) would take a CPU from the broker and the
scorer being measured. Here messages are built before the clock starts, ``occurred_at`` is spliced into the
encoded bytes when a message leaves, and the sender sleeps between one-millisecond ticks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

from confluent_kafka import KafkaError, Message, Producer

from producer_tools.publishing.publisher import OutboundMessage, producer_config
from producer_tools.servers.broker import BrokerError
from schemas.framing import SINGLE_OBJECT_MAGIC

_TICK_S = 0.001


def offer(bootstrap: str, topic: str, messages: Iterator[OutboundMessage], rate: float) -> tuple[int, int]:
    """Send ``messages`` at ``rate`` per second: every millisecond, those that are due, then sleep.

    The tools' publisher waits for each token inside ``poll``, which spins at thousands of events per second;
    here the offering producer must leave the CPU to the broker and the scorer. Returns how many the broker
    acknowledged and when pacing started (epoch ms). Raises BrokerError if any was not delivered.
    """
    producer = Producer(producer_config(bootstrap))
    acked = failed = 0

    def on_delivery(error: KafkaError | None, _: Message) -> None:
        nonlocal acked, failed
        if error is None:
            acked += 1
        else:
            failed += 1

    # The first message goes alone: connection, metadata and the idempotent producer id are then in place
    # before the clock starts, instead of in the latency of the first messages.
    first = next(messages)
    producer.produce(topic, first.value, first.key, on_delivery=on_delivery)
    producer.flush(30)
    started, started_ms, sent = time.monotonic(), int(time.time() * 1000), 1
    for message in messages:
        while (due := started + sent / rate - time.monotonic()) > 0:
            producer.poll(0)
            time.sleep(max(due, _TICK_S))
        producer.produce(topic, message.value, message.key, on_delivery=on_delivery)
        sent += 1
    producer.flush(60)
    if failed or acked != sent:
        raise BrokerError(f"offering to {topic}: {sent - acked} of {sent} messages not delivered")
    return acked, started_ms


def live_stamped(messages: list[OutboundMessage]) -> Iterator[OutboundMessage]:
    """Each message with its ``occurred_at`` set to the wall clock when it is taken (to be sent).

    The application event's first fields are three strings, the event type and ``occurred_at`` (a long), in
    every shipped version, so the stamp is spliced between the encoded prefix and suffix instead of encoding
    the event again. Messages that do not parse that way (malformed ones) go out unchanged.
    """
    parts = [_split_at_event_time(m.value) for m in messages]
    for message, split in zip(messages, parts, strict=True):
        if split is None:
            yield message
            continue
        now_ms = int(time.time() * 1000)
        yield replace(message, value=split[0] + _zigzag(now_ms) + split[1])


def _split_at_event_time(value: bytes | None) -> tuple[bytes, bytes] | None:
    if not value or value[:2] != SINGLE_OBJECT_MAGIC or len(value) < 12:
        return None
    try:
        pos = 10
        for _ in range(3):  # event_id, application_id, lead_id
            length, pos = _read_varint(value, pos)
            pos += length
        _, pos = _read_varint(value, pos)  # event_type
        _, end = _read_varint(value, pos)  # occurred_at
    except IndexError:
        return None
    return (value[:pos], value[end:]) if end <= len(value) else None


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def _zigzag(value: int) -> bytes:
    n, out = (value << 1) ^ (value >> 63), bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
