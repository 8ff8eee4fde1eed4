"""Producing a scenario's events: paced or not, in the test's thread or in the background (``Feeder``), each
message's landing place recorded so dead letters can be matched to what was sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message, Producer


@dataclass
class Delivered:
    """Where each produced message landed: (partition, offset) -> its index in the produced sequence."""

    positions: dict[tuple[int, int], int] = field(default_factory=dict)
    failed: int = 0
    acknowledged: int = 0

    @property
    def count(self) -> int:
        return self.acknowledged

    def reporter(self, index: int, track: bool) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback of message ``index``: counts it and, with ``track``, records where it landed."""

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                self.failed += 1
                return
            self.acknowledged += 1
            if track:
                self.positions[(msg.partition() or 0, msg.offset() or 0)] = index

        return report


def produce_tracked(
    bootstrap: str,
    topic: str,
    items: Iterable[tuple[bytes | None, bytes | None]],
    *,
    rate: float = 0.0,
    stop: threading.Event | None = None,
    track: bool = True,
) -> Delivered:
    """Produce (key, value) pairs, at most ``rate`` per second (0: unpaced), recording where each landed
    (``track``; otherwise only counting them).

    Delivery must survive a paused broker, so the message timeout is longer than any outage a scenario makes.
    """
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 10,
            "message.timeout.ms": 180_000,
            "queue.buffering.max.messages": 200_000,
        }
    )
    delivered = Delivered()
    started = time.monotonic()
    for index, (key, value) in enumerate(items):
        if stop is not None and stop.is_set():
            break
        if rate and (ahead := index / rate - (time.monotonic() - started)) > 0:
            producer.poll(ahead)
        _produce_when_queued(producer, topic, key, value, delivered.reporter(index, track))
        producer.poll(0)
    producer.flush(200)
    assert delivered.failed == 0, f"the test producer could not deliver {delivered.failed} message(s)"
    return delivered


def _produce_when_queued(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    report: Callable[[KafkaError | None, Message], None],
) -> None:
    """Produce one message, serving delivery reports while the local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key, on_delivery=report)
            return
        except BufferError:
            producer.poll(0.05)


class Feeder:
    """``produce_tracked`` in a background thread, so a scenario can act while events flow."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        items: Iterable[tuple[bytes | None, bytes | None]],
        rate: float = 0.0,
        track: bool = True,
    ) -> None:
        self._stop = threading.Event()
        self._result: Delivered | None = None
        self._error: BaseException | None = None
        args = (bootstrap, topic, items, rate, track)
        self._thread = threading.Thread(target=self._run, args=args, daemon=True)

    def _run(
        self, bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes | None]], rate: float, track: bool
    ) -> None:
        try:
            self._result = produce_tracked(bootstrap, topic, items, rate=rate, stop=self._stop, track=track)
        except BaseException as exc:  # re-raised in join(), in the test's thread
            self._error = exc

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def join(self, timeout: float = 300.0) -> Delivered:
        self._thread.join(timeout)
        if self._error is not None:
            raise self._error
        assert self._result is not None, f"the feeder did not finish within {timeout} s"
        return self._result
