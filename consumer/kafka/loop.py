"""The run loop of one worker: consume a batch, score it, hand it to the guarantee to publish.

The guarantee (:mod:`consumer.kafka.guarantees`) decides when offsets are stored or committed: at_least_once once
the broker acknowledged every delivery of a batch and of every batch before it; exactly_once in the batch's own
transaction. A stop request (SIGTERM/SIGINT) lets the current batch finish, then the guarantee settles what is
in flight and the consumer commits and leaves the group.

With a model store (``models.store_dir``) the loop follows activations (:mod:`consumer.kafka.model_control`): a
set verified and loaded in the background replaces the engine's between two batches, never within one.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from consumer.core.engine import ScoringEngine, quiet_collector
from consumer.core.offsets import InFlightBatch
from consumer.kafka.challenger_control import ChallengerFollower
from consumer.kafka.clients import Clients, Source, next_offsets
from consumer.kafka.delivery import PublishError
from consumer.kafka.fault_inject import injected_hang
from consumer.kafka.guarantees import AtLeastOnce, ExactlyOnce, Guarantee
from consumer.kafka.model_control import KafkaControlFeed, ModelFollower, control_consumer_conf
from consumer.kafka.registry_gate import RegistryGate
from consumer.kafka.watchdog import CallWatchdog, Watched
from consumer.settings import Settings
from consumer.telemetry.logs import KAFKA_LOG, Throttle
from consumer.telemetry.observer import LoopObserver, NullObserver, Offsets
from models.challengers import shadow_key
from models.store import ModelStore
from schemas.errors import RegistryUnavailableError

log = logging.getLogger(__name__)
_LIBRDKAFKA_TRANSACTION_TIMEOUT_S = 60.0  # librdkafka's default transaction.timeout.ms
_BROKER_DOWN_CODES = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE}
# After a lost session: how often the worker asks whether the cluster answers, and for how long it may answer (at
# least; three session timeouts if longer) while the group has not taken the worker back before it joins again
# with a new consumer (docs/reliability.md, "A rejoin that stalls after a frozen broker").
_REJOIN_PROBE_S = 5.0
_REJOIN_BOUND_S = 30.0


class ScoringLoop:
    """One consumer-group member. Build it, call ``run()``; ``request_stop()`` may come from a signal handler.

    ``clients`` makes its consumer and producers (default: librdkafka's; :mod:`consumer.kafka.memory` for tests).
    ``follower`` brings activated model sets and ``shadow`` challenger sets (default: ones reading the control
    topic when a model store is configured, else none).
    """

    def __init__(
        self,
        settings: Settings,
        engine: ScoringEngine,
        observer: LoopObserver | None = None,
        worker: int = 0,
        clients: Clients | None = None,
        follower: ModelFollower | None = None,
        shadow: ChallengerFollower | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.observer: LoopObserver = observer or NullObserver()
        self.worker = worker
        self._clients = clients or Clients()
        self._stop = False
        self._throttle = Throttle(10.0)
        # Commits the broker answered (on_commit, each committed transaction), observed on the loop's thread
        # where the consumer is at hand: librdkafka serves on_commit inside consume(), commit() and close().
        self._commits: list[Offsets] = []
        self._gate = RegistryGate(engine.decoder, self.observer.registry_state, self.observer.writer_schema_seen)
        self._follower = follower
        self._shadow = shadow
        # every blocking librdkafka call runs under a bound; one that outlives it ends this worker process
        self.watchdog = CallWatchdog()
        self._fault = injected_hang()
        self._transaction_timeout_s = _LIBRDKAFKA_TRANSACTION_TIMEOUT_S
        self._rejoin = RejoinWatch(max(_REJOIN_BOUND_S, 3 * settings.consumer.session_timeout_ms / 1000))

    def request_stop(self) -> None:
        self._stop = True

    def run(self) -> None:
        """Consume until ``request_stop()``; then drain and leave the group.

        Raises:
            KafkaException: a fatal Kafka error no retry mends.
            PublishError: a delivery no retry mends (a missing topic); offsets of what it held stay uncommitted.
        """
        self.observer.models_loaded(self.engine.models)
        quiet_collector()
        guarantee = self._guarantee()
        guarantee.start()
        followers = self._start_followers()
        source = self._watched(self._clients.source(self._consumer_conf()))
        try:
            self._subscribe(source, guarantee)
            log.info(
                "worker %d consuming %s as group %s (%s)",
                self.worker,
                self.settings.topics.input,
                self.settings.consumer.group_id,
                guarantee.name,
            )
            while not self._stop:
                self._step(source, guarantee)
                if self._rejoin.stalled(source, self.settings.topics.input):
                    source = self._join_again(source, guarantee)
            log.info("worker %d stopping", self.worker)
            guarantee.drain(source)
            self._observe_commits(source)
        except PublishError as exc:
            log.error("worker %d: %s", self.worker, exc)
            raise
        finally:
            source.close()  # commits what was stored and leaves the group
            log.info("worker %d left the group", self.worker)
            for follower in followers:
                follower.close()

    def _subscribe(self, source: Source, guarantee: Guarantee) -> None:
        source.subscribe(
            [self.settings.topics.input],
            on_assign=self._on_assign,
            on_revoke=partial(self._on_revoke, guarantee),
            on_lost=partial(self._on_lost, guarantee),
        )

    def _join_again(self, source: Source, guarantee: Guarantee) -> Source:
        """The group has not taken this worker back long after its session was lost, although the cluster
        answers: close the consumer (and the coordinator connection whose requests stay queued) and join with a
        new one. Its partitions start again from the group's committed offsets."""
        log.warning(
            "worker %d: the cluster has answered for %.0f s, yet the group has not taken this worker back since "
            "its session was lost %.0f s ago; joining again with a new consumer",
            self.worker,
            self._rejoin.answering_s,
            self._rejoin.lost_s,
        )
        try:
            source.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("worker %d: closing the stalled consumer: %s", self.worker, exc)
        self._rejoin.renewed()
        fresh = self._watched(self._clients.source(self._consumer_conf()))
        self._subscribe(fresh, guarantee)
        return fresh

    def _consumer_conf(self) -> dict[str, Any]:
        callbacks = {
            "error_cb": self._on_kafka_error,
            "stats_cb": self.observer.kafka_stats,
            "logger": KAFKA_LOG,
            "on_commit": self._on_commit,
        }
        return self.settings.librdkafka("consumer", self.worker) | callbacks

    def _guarantee(self) -> Guarantee:
        settings, topics = self.settings, self.settings.topics
        conf = settings.librdkafka("producer", self.worker) | {"error_cb": self._on_kafka_error, "logger": KAFKA_LOG}
        self._transaction_timeout_s = conf.get("transaction.timeout.ms", 60_000) / 1000
        if settings.guarantee == "exactly_once":
            # a coordinator that is up aborts an open transaction by itself after transaction.timeout.ms
            wedged_after_s = 2 * conf["transaction.timeout.ms"] / 1000
            return ExactlyOnce(
                self._new_sink(conf),
                topics.output,
                topics.dlq,
                self._transaction_committed,
                reset=settings.consumer.auto_offset_reset,
                stalled=self._stalled,
                wedged_after_s=wedged_after_s,
                transactional_id=conf["transactional.id"],
                stopping=lambda: self._stop,
                shadow=settings.models.shadow_topic,
            )
        return AtLeastOnce(
            self._new_sink(conf),
            topics.output,
            topics.dlq,
            self._report,
            stalled=self._stalled,
            shadow=settings.models.shadow_topic,
            max_unacknowledged=settings.consumer.max_unacknowledged_batches,
        )

    def _new_sink(self, conf: dict[str, Any]) -> Any:
        return lambda: self._watched(self._clients.sink(conf))

    def _watched(self, client: Any) -> Any:
        return Watched(client, self.watchdog, self._transaction_timeout_s, self._fault)

    def _control_follower(self) -> ModelFollower | None:
        models = self.settings.models
        if models.store_dir is None:
            return None
        conf = control_consumer_conf(self.settings.librdkafka("consumer", self.worker), self.settings.consumer.group_id)
        conf |= {"error_cb": self._on_kafka_error, "logger": KAFKA_LOG}
        feed = KafkaControlFeed(conf, models.control_topic, models.channel)
        store = ModelStore(models.store_dir)
        log.info(
            "worker %d follows model-set activations on %s (channel %s), serving %s",
            self.worker,
            models.control_topic,
            models.channel,
            self.engine.models.version,
        )
        return ModelFollower(feed, store, models, self.engine.models.version, self.observer.model_set_refused)

    def _start_followers(self) -> list[ModelFollower | ChallengerFollower]:
        self._follower = self._follower or self._control_follower()
        self._shadow = self._shadow or self._challenger_follower()
        followers = [f for f in (self._follower, self._shadow) if f is not None]
        for follower in followers:
            follower.start()
        return followers

    def _challenger_follower(self) -> ChallengerFollower | None:
        models = self.settings.models
        if models.store_dir is None:
            return None
        conf = control_consumer_conf(self.settings.librdkafka("consumer", self.worker), self.settings.consumer.group_id)
        conf |= {"error_cb": self._on_kafka_error, "logger": KAFKA_LOG}
        feed = KafkaControlFeed(conf, models.control_topic, shadow_key(models.channel))
        return ChallengerFollower(feed, ModelStore(models.store_dir), models, self.observer.model_set_refused)

    def _take_challenger(self) -> None:
        changed, challenger = self._shadow.take() if self._shadow is not None else (False, None)
        if not changed:
            return
        try:
            self.engine.set_challenger(challenger)
        except ValueError as exc:
            log.error("worker %d: %s; no challenger", self.worker, exc)
            self.observer.model_set_refused("load")
            return
        what = f"challenger set {challenger.version} ({', '.join(challenger.names)})" if challenger else "no challenger"
        log.info("worker %d scores with %s from this batch on", self.worker, what)

    def _take_models(self) -> None:
        """Between two batches: score from now on with the set the follower loaded, if there is one."""
        models = self._follower.take() if self._follower is not None else None
        if models is None:
            return
        previous, started = self.engine.models.version, time.perf_counter()
        self.engine.swap_models(models)
        self.observer.models_loaded(models)
        took_ms = (time.perf_counter() - started) * 1000
        log.info(
            "worker %d scores with model set %s from this batch on (was %s; swapped in %.1f ms)",
            self.worker,
            models.version,
            previous,
            took_ms,
        )

    def _step(self, source: Source, guarantee: Guarantee) -> None:
        self.observer.heartbeat()
        self._take_models()
        self._take_challenger()
        messages = source.consume(self.settings.consumer.batch_size, self.settings.consumer.batch_timeout_s)
        self._observe_commits(source)
        guarantee.tick(source)
        self._gate.tick(source)
        good = self._gate.admit(source, [m for m in messages if not self._is_error(m)])
        if good:
            try:
                outcome = self.engine.score_batch([m.value() for m in good])
            except RegistryUnavailableError as exc:
                self._gate.hold_all(source, good, exc)
                return
            batch = InFlightBatch(next_offsets(good), pending=len(good))
            batch.event_times_ms = [s.event_time_ms for s in outcome.scored]
            batch.dead_letters = len(outcome.rejected)
            started = time.perf_counter()
            guarantee.publish(source, batch, good, outcome)
            outcome.stage_seconds["publish"] = time.perf_counter() - started
            self.observer.batch_scored(outcome, len(good))
        self._observe_commits(source)

    def _report(self, batch: InFlightBatch) -> None:
        now_ms = time.time() * 1000.0
        latencies = (now_ms - np.asarray(batch.event_times_ms, dtype=np.float64)) / 1000.0
        self.observer.batch_published(len(batch.event_times_ms), batch.dead_letters, latencies)

    def _transaction_committed(self, batch: InFlightBatch) -> None:
        """exactly_once: the batch's transaction committed its results and its offsets (no on_commit tells)."""
        self._report(batch)
        self._commits.append(dict(batch.next_offsets))

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """Every commit the broker answered: auto-commits (served by consume()), on revoke and on shutdown."""
        if err is None:
            self._commits.append({(tp.topic, tp.partition): tp.offset for tp in partitions if tp.error is None})

    def _observe_commits(self, source: Source) -> None:
        commits, self._commits = self._commits, []
        if not commits:
            return
        held = {(tp.topic, tp.partition) for tp in source.assignment()}  # an answer after a revoke is not ours
        for answered in commits:
            offsets = {tp: offset for tp, offset in answered.items() if tp in held and offset >= 0}
            if offsets:
                self.observer.offsets_committed(offsets, {tp: _cached_high_watermark(source, *tp) for tp in offsets})

    def _is_error(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return False
        if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            self._log_every("topic", 15, "input topic %s does not exist (yet); waiting for it", msg.topic())
        elif err.code() != KafkaError._PARTITION_EOF:
            self._log_every(str(err.code()), 10, "consume error: %s", err.str())
        if err.fatal():
            raise KafkaException(err)
        return True

    def _on_assign(self, source: Source, partitions: list[TopicPartition]) -> None:
        log.info("worker %d assigned %d partition(s)", self.worker, len(partitions))
        self._rejoin.joined()
        self.observer.assignment_changed(len(source.assignment()) + len(partitions))

    def _on_revoke(self, guarantee: Guarantee, source: Source, partitions: list[TopicPartition]) -> None:
        log.info("worker %d revoked %d partition(s): committing what was acknowledged", self.worker, len(partitions))
        guarantee.revoked(source, partitions)
        self._gate.forget(partitions)
        # The commit on revoke is not observed: the lag book is cleared with the assignment just below, and on
        # close() the consumer is being destroyed, so asking it for its assignment fails (_DESTROY) inside the
        # callback, where librdkafka cannot even raise it as an exception (seen on Apache Kafka: exit 1).
        self._commits.clear()
        self.observer.assignment_changed(0)

    def _on_lost(self, guarantee: Guarantee, source: Source, partitions: list[TopicPartition]) -> None:
        log.warning("worker %d lost %d partition(s) (session timed out)", self.worker, len(partitions))
        self._rejoin.lost()
        guarantee.lost(source, partitions)
        self._gate.forget(partitions)
        self.observer.assignment_changed(0)

    def _on_kafka_error(self, err: KafkaError) -> None:
        down = err.code() in _BROKER_DOWN_CODES
        if down:
            self.observer.broker_state(False)
        self._log_every(str(err.code()), 10, "kafka: %s%s", err.str(), " (retrying)" if down else "")

    def _stalled(self, waiting: bool) -> None:
        """A transactional call waits on a broker that does not answer (True) or answered again (False): not
        ready meanwhile, and still alive (the wait is deliberate)."""
        self.observer.broker_state(not waiting)
        self.observer.heartbeat()

    def _log_every(self, key: str, seconds: float, message: str, *args: object) -> None:
        if self._throttle.ready(key, seconds):
            log.warning(message, *args)


def _cached_high_watermark(source: Source, topic: str, partition: int) -> int:
    """The high watermark of the partition's latest fetch response (no request is sent); -1 if none yet."""
    try:
        watermarks = source.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
    except KafkaException:
        return -1
    return int(watermarks[1]) if watermarks else -1


class RejoinWatch:
    """Whether a worker whose session was lost has waited too long for the group to take it back.

    Only the time the cluster answers counts (a partition's offsets asked of its leader every
    ``_REJOIN_PROBE_S``): while a broker is frozen or down nothing can join, and librdkafka rejoins by itself
    once it is back. A worker given no partitions by a rebalance is in the group (its assign callback ran with
    none) and never counts as stalled.
    """

    def __init__(self, bound_s: float, clock: Any = time.monotonic) -> None:
        self.bound_s = bound_s
        self._clock = clock
        self._lost_at: float | None = None
        self._answering_since: float | None = None
        self._probed_at = float("-inf")

    def lost(self) -> None:
        self._lost_at = self._lost_at if self._lost_at is not None else self._clock()

    def joined(self) -> None:
        self._lost_at = self._answering_since = None

    def renewed(self) -> None:
        """A new consumer joins: the wait starts again."""
        self._lost_at, self._answering_since = self._clock(), None

    @property
    def lost_s(self) -> float:
        return self._clock() - self._lost_at if self._lost_at is not None else 0.0

    @property
    def answering_s(self) -> float:
        return self._clock() - self._answering_since if self._answering_since is not None else 0.0

    def stalled(self, source: Source, topic: str) -> bool:
        if self._lost_at is None or self._clock() - self._probed_at < _REJOIN_PROBE_S:
            return False
        self._probed_at = self._clock()
        try:
            source.get_watermark_offsets(TopicPartition(topic, 0), timeout=_REJOIN_PROBE_S)
        except KafkaException:
            self._answering_since = None
            return False
        if self._answering_since is None:
            self._answering_since = self._clock()
        return self.answering_s >= self.bound_s
