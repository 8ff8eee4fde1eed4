"""One writer is the monitor's design: a member that owns only some partitions says so (its figures, detectors
and decisions are over those only)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from consumer.monitor.loop import MonitorLoop
from consumer.monitor.metrics import MonitorMetrics
from consumer.monitor.processor import MonitorCore
from consumer.monitor.settings import MonitorSettings
from consumer.monitor.store import StateStore


class SixPartitions:
    """The one call the check makes of a consumer: the scores topic's metadata."""

    def list_topics(self, topic: str, timeout: float) -> SimpleNamespace:
        return SimpleNamespace(topics={topic: SimpleNamespace(partitions=dict.fromkeys(range(6)))})


@pytest.mark.parametrize(("owned", "warned"), [(range(6), False), (range(3), True)])
def test_a_member_that_owns_only_some_partitions_says_its_figures_are_partial(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, owned: range, warned: bool
) -> None:
    settings = MonitorSettings(store={"path": tmp_path})
    with StateStore(tmp_path) as store:
        core = MonitorCore(store, settings)
        core.assigned(owned)
        loop = MonitorLoop(settings, core, MonitorMetrics(CollectorRegistry()))
        with caplog.at_level(logging.WARNING, "consumer.monitor.loop"):
            loop._warn_if_partial(SixPartitions())  # type: ignore[arg-type]
    assert ("owns 3 of the 6 partitions" in caplog.text) is warned
