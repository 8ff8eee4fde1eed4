"""What the run loop tells the outside world (metrics, health) once per batch, never per event.

``LoopObserver`` is the boundary; ``NullObserver`` is the do-nothing fake for tests and the benchmark's
metrics-off run. The Prometheus implementation lives in ``consumer.metrics``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from consumer.engine import BatchOutcome


class LoopObserver(Protocol):
    def batch_scored(self, outcome: BatchOutcome, consumed: int) -> None:
        """A batch was consumed and scored (before its results are acknowledged)."""

    def batch_published(self, results: int, dead_letters: int, latencies_s: np.ndarray) -> None:
        """A batch's results and dead letters were all acknowledged; end-to-end latency per result."""

    def heartbeat(self) -> None:
        """The loop went round once (for /healthz)."""

    def assignment_changed(self, partitions: int) -> None: ...

    def broker_state(self, up: bool) -> None: ...

    def kafka_stats(self, stats_json: str) -> None:
        """librdkafka's statistics (consumer lag, high watermarks), every ``statistics.interval.ms``."""


class NullObserver:
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
