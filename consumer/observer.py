"""What the run loop tells the outside world (metrics, health) once per batch, never per event.

``LoopObserver`` is the boundary; ``NullObserver`` is the do-nothing fake for tests and the benchmark's
metrics-off run. The Prometheus implementation lives in ``consumer.metrics``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from consumer.engine import BatchOutcome
from models.artifacts import ModelSet


class LoopObserver(Protocol):
    def models_loaded(self, models: ModelSet) -> None:
        """The worker's models are verified and loaded (versions, thresholds), before it joins the group."""

    def batch_scored(self, outcome: BatchOutcome, consumed: int) -> None:
        """A batch was consumed, scored and handed to the producer (before its results are acknowledged);
        ``outcome.stage_seconds["publish"]`` is the time handing it over took."""

    def batch_published(self, results: int, dead_letters: int, latencies_s: np.ndarray) -> None:
        """A batch's results and dead letters were all acknowledged; end-to-end latency per result."""

    def heartbeat(self) -> None:
        """The loop went round once (for /healthz)."""

    def assignment_changed(self, partitions: int) -> None: ...

    def broker_state(self, up: bool) -> None: ...

    def kafka_stats(self, stats_json: str) -> None:
        """librdkafka's statistics (consumer lag, high watermarks), every ``statistics.interval.ms``."""


class NullObserver:
    def models_loaded(self, models: ModelSet) -> None:
        pass

    def batch_scored(self, outcome: BatchOutcome, consumed: int) -> None:
        pass

    def batch_published(self, results: int, dead_letters: int, latencies_s: np.ndarray) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def assignment_changed(self, partitions: int) -> None:
        pass

    def broker_state(self, up: bool) -> None:
        pass

    def kafka_stats(self, stats_json: str) -> None:
        pass
