"""Scenario 7 of the fault suite: 1,000,000 events through one worker, its memory watched all along.

Marked ``soak`` too (minutes, not seconds): ``-m "faults and not soak"`` leaves it out. The worker's resident
set (VmRSS) is sampled with its progress; after the warm-up (the dedup cache, the drift windows and
librdkafka's queues fill within the first 20%), it must grow by less than 5%.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.faults.support import (
    Expected,
    Feeder,
    committed_total,
    conservation,
    read_outcomes,
    rss_bytes,
    stream_messages,
)
from tests.integration.harness import Lanes, ScorerProcess

pytestmark = [pytest.mark.faults, pytest.mark.soak, pytest.mark.timeout(1800)]
SOAK_EVENTS = 1_000_000
WARM_UP = 0.2  # of the events
MAX_GROWTH = 0.05
SAMPLE_EVERY_S = 3.0
MiB = 1024 * 1024


def test_a_million_events_through_one_worker_with_flat_memory(lanes: Lanes, tmp_path: Path) -> None:
    started = time.monotonic()
    produced_ids: set[str] = set()

    def feed() -> Iterator[tuple[bytes | None, bytes | None]]:
        for key, value, event_id in stream_messages(SOAK_EVENTS, seed=207):
            produced_ids.add(event_id)
            yield key, value

    curve: list[tuple[float, int, int]] = []  # seconds, events committed, RSS bytes
    with ScorerProcess(lanes, tmp_path) as scorer, Feeder(lanes.bootstrap, lanes.input, feed(), track=False) as feeder:
        assert scorer.process is not None
        pid = scorer.process.pid  # one worker runs in the scorer's own process
        done = 0
        while done < SOAK_EVENTS:
            assert scorer.process.poll() is None, f"scorer exited:\n{scorer.log[-3000:]}"
            assert time.monotonic() - started < 1500, f"only {done:,} events after 25 minutes"
            time.sleep(SAMPLE_EVERY_S)
            done = committed_total(lanes)
            curve.append((time.monotonic() - started, done, rss_bytes(pid)))
        assert feeder.join().count == SOAK_EVENTS
        scorer.stop()
    growth = _report(curve)
    assert growth < MAX_GROWTH, f"RSS grew {growth:.1%} after the warm-up"
    rate = SOAK_EVENTS / (curve[-1][0] - curve[0][0])
    conservation("7. soak: 1M events, one worker", Expected(frozenset(produced_ids)), read_outcomes(lanes),
                 time.monotonic() - started, f"RSS +{growth:.1%} after warm-up; ~{rate:,.0f} events/s")  # fmt: skip


def _report(curve: list[tuple[float, int, int]]) -> float:
    """Print the RSS curve by tenths of the run; return the growth from the end of the warm-up to the end."""
    print("\nsoak RSS curve (events committed -> worker VmRSS):")
    for tenth in range(1, 11):
        seconds, done, rss = next(p for p in curve if p[1] >= SOAK_EVENTS * tenth / 10)
        print(f"  {done:>9,} events  {seconds:6.0f} s  {rss / MiB:7.1f} MiB")
    after = [rss for _, done, rss in curve if done >= SOAK_EVENTS * WARM_UP]
    baseline = statistics.median(after[:5])
    final = statistics.median(after[-5:])
    peak = max(after)
    print(f"  after warm-up: start {baseline / MiB:.1f} MiB, end {final / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB")
    return final / baseline - 1.0
