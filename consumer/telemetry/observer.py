"""What the run loop tells the outside world (metrics, health) once per batch, never per event.

``LoopObserver`` is the boundary; ``NullObserver`` is the do-nothing fake for tests and the benchmark's
metrics-off run. The Prometheus implementation lives in ``consumer.telemetry.metrics``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from consumer.core.engine import BatchOutcome
from models.artifacts import ModelSet
from schemas.catalog import SchemaVersion

if TYPE_CHECKING:
    from consumer.settings import Settings

Offsets = dict[tuple[str, int], int]  # (topic, partition) -> offset
# Makes worker N's observer inside its process (None: no telemetry); the host passes it to every worker.
ObserverFactory = Callable[["Settings", int], "LoopObserver | None"]


class LoopObserver(Protocol):
    def models_loaded(self, models: ModelSet) -> None:
        """The worker's models are verified and loaded (versions, thresholds), before it joins the group."""

    def model_set_refused(self, reason: str) -> None:
        """An activated model set failed verification or loading (``reason``: a label of
        ``models.store.REFUSAL_REASONS``); the running set keeps scoring. Called from the
        thread that follows activations."""

    def batch_scored(self, outcome: BatchOutcome, consumed: int) -> None:
        """A batch was consumed, scored and handed to the producer (before its results are acknowledged);
        ``outcome.stage_seconds["publish"]`` is the time handing it over took."""

    def batch_published(self, results: int, dead_letters: int, latencies_s: np.ndarray) -> None:
        """A batch's results and dead letters were all acknowledged; end-to-end latency per result."""

    def heartbeat(self) -> None:
        """The loop went round once (for /healthz)."""

    def watchdog_fired(self, call: str) -> None:
        """The worker was ended by its watchdog, blocked in ``call`` (reported by the host, which saw it exit)."""

    def assignment_changed(self, partitions: int) -> None: ...

    def broker_state(self, up: bool) -> None: ...

    def registry_state(self, up: bool) -> None:
        """The Schema Registry stopped answering (partitions wait for a writer schema) or answered again."""

    def writer_schema_seen(self, writer: SchemaVersion, reader: SchemaVersion) -> None:
        """The decoder met ``writer`` for the first time (once per schema, inside its first message's decoding):
        check it against the models. Must not raise."""

    def kafka_stats(self, stats_json: str) -> None:
        """librdkafka's statistics (committed offsets, high watermarks and last stable offsets, broker states),
        every ``statistics.interval.ms``."""

    def offsets_committed(self, offsets: Offsets, high_watermarks: Offsets) -> None:
        """The broker acknowledged a commit (an auto-commit, a commit on revoke or shutdown, or with exactly_once a
        transaction) of ``offsets`` for partitions the worker still holds; ``high_watermarks``: each one's high
        watermark as of its latest fetch response."""


class NullObserver:
    def models_loaded(self, models: ModelSet) -> None:
        pass

    def model_set_refused(self, reason: str) -> None:
        pass

    def batch_scored(self, outcome: BatchOutcome, consumed: int) -> None:
        pass

    def batch_published(self, results: int, dead_letters: int, latencies_s: np.ndarray) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def watchdog_fired(self, call: str) -> None:
        pass

    def assignment_changed(self, partitions: int) -> None:
        pass

    def broker_state(self, up: bool) -> None:
        pass

    def registry_state(self, up: bool) -> None:
        pass

    def writer_schema_seen(self, writer: SchemaVersion, reader: SchemaVersion) -> None:
        pass

    def kafka_stats(self, stats_json: str) -> None:
        pass

    def offsets_committed(self, offsets: Offsets, high_watermarks: Offsets) -> None:
        pass
