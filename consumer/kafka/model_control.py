"""Hot reload: every worker of every replica follows the model-set activations on a compacted control topic.

``crm-scorer models activate|rollback`` records the activation in the model store (``models.store``) and
publishes it here: key = the channel (``models.channel``), value = an ``Activation`` as JSON (version, the
manifest's sha256, activated_at, by, reason). Each worker reads the topic with its own consumer that joins no
group (``assign`` from the beginning, never ``subscribe``), in a background thread. For each activation of its
channel it verifies the set (present in its store, the manifest the one activated, every file's sha256, the
feature-pipeline version, every configured model) and loads it, leaf tables included, off the hot path; the run
loop takes the loaded set between two batches (``ModelFollower.take``), so no batch is scored by a mix of sets.
A set that fails is refused with one log line and ``crm_scorer_model_set_refused_total{reason}``; the running
set keeps scoring.

Why a control topic rather than a watched directory: the scorer runs as several replicas on several hosts,
each with several worker processes. A topic reaches all of them through the one system they already depend on,
in the same order, with no shared filesystem events (inotify does not cross NFS or a Kubernetes volume, and
polling a directory from every worker is a race between a half-copied set and its reader). Compaction keeps
the latest activation per channel for ever, so a replica that starts (or restarts) tomorrow reads the latest
activation at once, while the store's record tells it where to start before it has read the topic. The store
still holds the sets' files: the topic carries the decision, not the models.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, Self

from models.artifacts import ModelSet, load_models
from models.config import ModelsConfig
from models.store import Activation, ModelStore, StoreError
from schemas.errors import ArtifactError

log = logging.getLogger(__name__)
_POLL_S = 0.5


class ControlFeed(Protocol):
    """The values published under one channel, in order; each value once."""

    def poll(self, timeout_s: float) -> list[bytes]: ...

    def close(self) -> None: ...


class Refused(Exception):
    """An activation the worker will not serve: ``reason`` is a metric label, the message one log line."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def verified_set(store: ModelStore, config: ModelsConfig, activation: Activation) -> ModelSet:
    """The set ``activation`` names, verified against it and the store and loaded.

    Raises:
        Refused: not in the store, a manifest other than the one activated, a file whose sha256 differs,
            another feature pipeline, a configured model missing, or a model that does not load.
    """
    version = activation.version
    try:
        directory = store.directory(version)
        if store.manifest_sha256(version) != activation.manifest_sha256:
            raise Refused("manifest_changed", f"model set {version}: its manifest is not the one activated")
        problems = store.problems(version, [*(b.name for b in config.banks), "lead"])
    except StoreError as exc:
        raise Refused("not_in_store", str(exc)) from exc
    if problems:
        reason = "pipeline" if any("pipeline" in p for p in problems) else "verification"
        raise Refused(reason, f"model set {problems[0]}")  # each problem starts with the version
    try:
        return load_models(config, directory)
    except ArtifactError as exc:
        raise Refused("load", f"model set {version}: {exc}") from exc


class ControlFollower:
    """A background thread that reads a control feed and acts (``follow``) on the newest value of each poll.

    What it acts on is verified and loaded in this thread, off the hot path; the loop takes the result between two
    batches. Nothing it reads may end the worker: a failed poll is logged and tried again.
    """

    def __init__(
        self, feed: ControlFeed, store: ModelStore, config: ModelsConfig, refused: Callable[[str], None], poll_s: float
    ) -> None:
        self._feed, self._store, self._config = feed, store, config
        self._refused, self._poll_s = refused, poll_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)
        self._feed.close()

    def follow(self, value: bytes) -> None:
        """Act on one published value (the thread calls it; tests may too)."""
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                values = self._feed.poll(self._poll_s)
            except Exception:  # the follower must never end the worker; the next poll tries again
                log.exception("%s: reading the model control topic failed", type(self).__name__)
                self._stop.wait(self._poll_s)
                continue
            if values:
                self.follow(values[-1])  # only the newest record matters


class ModelFollower(ControlFollower):
    """Follows one channel's activations in a background thread and keeps the newest verified set ready.

    ``serving`` is the version the worker scores with now. ``refused(reason)`` is called (from the thread) for
    every activation refused.
    """

    def __init__(
        self,
        feed: ControlFeed,
        store: ModelStore,
        config: ModelsConfig,
        serving: str,
        refused: Callable[[str], None],
        poll_s: float = _POLL_S,
    ) -> None:
        super().__init__(feed, store, config, refused, poll_s)
        self._wanted = serving  # the version served or ready to be: an activation of it again changes nothing
        self._serving = serving
        self._ready: ModelSet | None = None

    def take(self) -> ModelSet | None:
        """The set loaded since the last call, once (None: nothing new). Cheap: the loop calls it every batch."""
        if self._ready is None:
            return None
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            self._serving = ready.version
        return ready

    def follow(self, value: bytes) -> None:
        try:
            activation = Activation.from_json(value)
        except ValueError as exc:
            self._refuse(Refused("bad_record", f"control record: {exc}"))
            return
        if activation.version == self._wanted:
            return
        by, why = activation.by, activation.reason or "no reason given"
        log.info("model set %s activated by %s (%s): verifying and loading", activation.version, by, why)
        started = time.perf_counter()
        try:
            models = verified_set(self._store, self._config, activation)
        except Refused as exc:
            self._refuse(exc)
            return
        seconds = time.perf_counter() - started
        log.info("model set %s verified and loaded in %.2f s; the next batch scores with it", models.version, seconds)
        with self._lock:
            self._ready, self._wanted = models, activation.version

    def _refuse(self, refusal: Refused) -> None:
        log.error("%s; refused, still scoring with model set %s", refusal, self._serving)
        self._refused(refusal.reason)


class KafkaControlFeed:
    """The control topic read by a consumer that joins no group: every partition assigned from the beginning
    (the channel's records are all in one partition: they share a key), values of other channels skipped."""

    def __init__(self, conf: dict[str, Any], topic: str, channel: str) -> None:
        from confluent_kafka import Consumer

        self._topic, self._key = topic, channel.encode()
        self._consumer = Consumer(conf)
        self._assigned = False

    def poll(self, timeout_s: float) -> list[bytes]:
        if not self._assigned and not self._assign():
            return []
        values = []
        for message in self._consumer.consume(100, timeout_s):
            value = message.value()
            if message.error() is None and message.key() == self._key and value is not None:
                values.append(value)
        return values

    def close(self) -> None:
        self._consumer.close()

    def _assign(self) -> bool:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        metadata = self._consumer.list_topics(self._topic, timeout=5.0).topics.get(self._topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            return False  # not created yet: no activation to follow; asked again on the next poll
        partitions = [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in sorted(metadata.partitions)]
        self._consumer.assign(partitions)
        self._assigned = True
        return True


def control_consumer_conf(consumer_conf: dict[str, Any], group_id: str) -> dict[str, Any]:
    """The control feed's consumer properties from the worker's: the same connection, no group membership and
    no commits (it always reads from the beginning; ``group.id`` only names it in the broker's logs)."""
    conf = {k: v for k, v in consumer_conf.items() if not k.startswith("group.") and k != "session.timeout.ms"}
    return conf | {
        "group.id": f"{group_id}.models",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }


def publish_activation(
    producer_conf: dict[str, Any], topic: str, channel: str, activation: Activation, timeout_s: float = 15.0
) -> None:
    """Publish ``activation`` under ``channel``, creating the control topic (compacted, one partition) first when
    it does not exist.

    Raises:
        KafkaException: the topic cannot be created or the record is not acknowledged within ``timeout_s``.
    """
    from confluent_kafka import KafkaError, KafkaException, Producer

    conf = _command_conf(producer_conf)
    ensure_control_topic(conf, topic, timeout_s)
    producer = Producer(conf)
    errors: list[KafkaError | None] = []
    producer.produce(topic, activation.to_json(), channel.encode(), on_delivery=lambda err, _m: errors.append(err))
    if producer.flush(timeout_s) or not errors:
        raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, f"{topic}: activation not acknowledged"))
    if (error := errors[0]) is not None:
        raise KafkaException(error)


def ensure_control_topic(producer_conf: dict[str, Any], topic: str, timeout_s: float = 15.0) -> None:
    """Create the control topic (compacted, one partition) unless it exists: also the check, before anything is
    recorded, that the brokers answer.

    Raises:
        KafkaException: the brokers do not answer within ``timeout_s``, or refuse to create the topic.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(_command_conf(producer_conf))
    if topic in admin.list_topics(timeout=timeout_s).topics:
        return
    # replication_factor -1: the broker's default.replication.factor
    new = NewTopic(topic, num_partitions=1, replication_factor=-1, config={"cleanup.policy": "compact"})
    try:
        admin.create_topics([new], operation_timeout=timeout_s)[topic].result(timeout_s)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another operator created it meanwhile
            raise


def _command_conf(producer_conf: dict[str, Any]) -> dict[str, Any]:
    """A command's one-off client: no transactions, and librdkafka's own connection errors kept off the terminal
    (the command prints one line naming the failure)."""
    return {k: v for k, v in producer_conf.items() if not k.startswith("transaction")} | {"log_level": 2}
