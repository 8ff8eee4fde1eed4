"""The gateway's Kafka producer: an upload's event is answered only once the broker acknowledged it.

``publish`` awaits the delivery report itself, so an answer is either "the broker has it" or an error:
librdkafka's ``message.timeout.ms`` is the gateway's ``publish_timeout_s``, after which the report is a
failure and no late delivery follows it. A thread serves the delivery reports and, every
``readiness_interval_s``, asks the broker for the input topic's metadata: that answer is the broker half of
readiness.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from consumer.connection import KafkaConnection

log = logging.getLogger(__name__)


class EventPublisher(Protocol):
    async def publish(self, key: bytes, value: bytes) -> None:
        """Return once the broker acknowledged; raises ConnectionError otherwise (the upload is refused with 503,
        never half-accepted)."""

    def broker_ready(self) -> bool: ...

    def close(self) -> None: ...


def producer_config(connection: KafkaConnection, timeout_s: float) -> dict[str, Any]:
    """The shared connection (broker, credentials, TLS) for the gateway's one idempotent producer: acks=all,
    and a message timeout of ``timeout_s``, after which the delivery report is a failure."""
    client_id = f"{connection.client_id or 'crm-scorer'}-gateway"
    owned = {
        "client.id": ("kafka.client_id", client_id),
        "enable.idempotence": ("the gateway's delivery", True),
        "acks": ("the gateway's delivery", "all"),
        "delivery.timeout.ms": ("publish_timeout_s", int(timeout_s * 1000)),
    }
    return connection.librdkafka({"linger.ms": 1, "reconnect.backoff.max.ms": 10_000}, owned=owned)


class KafkaPublisher:
    """Publishes to ``topic`` with acks=all and idempotence (taken from the scorer's producer settings)."""

    def __init__(self, conf: dict[str, Any], topic: str, readiness_interval_s: float) -> None:
        self._topic = topic
        self._interval = readiness_interval_s
        self._producer = Producer(conf)
        self._ready = False
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._serve_reports, name="gateway-delivery-reports", daemon=True),
            threading.Thread(target=self._check_broker, name="gateway-broker-check", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    async def publish(self, key: bytes, value: bytes) -> None:
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[None] = loop.create_future()

        def report(err: KafkaError | None, _msg: Any) -> None:
            loop.call_soon_threadsafe(_settle, acked, err)

        try:
            self._producer.produce(self._topic, value, key, on_delivery=report)
        except (BufferError, KafkaException) as exc:
            raise ConnectionError(f"the producer refused the event: {exc}") from None
        try:
            await acked
        except ConnectionError:
            self._ready = False  # until the next metadata answer says the broker is back
            raise

    def broker_ready(self) -> bool:
        return self._ready

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self._interval + 5)
        self._producer.flush(5)

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def _check_broker(self) -> None:
        problem: str | None = "not asked yet"
        while not self._stop.is_set():
            now = self._broker_problem()
            if now != problem:  # log changes only: an absent broker is one line, not one every interval
                log.log(logging.WARNING if now else logging.INFO, "broker: %s", now or "answers; uploads accepted")
            problem = now
            self._ready = now is None
            self._stop.wait(self._interval)

    def _broker_problem(self) -> str | None:
        """None when the broker answers metadata for the topic, else what is wrong."""
        try:
            metadata = self._producer.list_topics(self._topic, timeout=self._interval)
        except KafkaException as exc:
            return f"no metadata within {self._interval} s ({exc.args[0] if exc.args else exc}); uploads refused"
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None or not topic.partitions:
            return f"topic {self._topic} is not there ({topic.error if topic else 'unknown'}); uploads refused"
        return None


def _settle(acked: asyncio.Future[None], err: KafkaError | None) -> None:
    if acked.done():
        return
    if err is None:
        acked.set_result(None)
    else:
        acked.set_exception(ConnectionError(f"the broker did not acknowledge the event: {err.str()}"))
