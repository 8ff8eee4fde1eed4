"""Scenario 7 of the fault suite: 1,000,000 events through one worker, its memory watched all along.

Marked ``soak`` too (minutes, not seconds): ``-m "faults and not soak"`` leaves it out. The worker's resident
set (VmRSS) is sampled with its progress; after the warm-up (the dedup cache, the drift windows and
librdkafka's prefetch queue fill within the first 20%), it must grow by less than 5%.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.faults.processes import rss_bytes
from tests.integration.faults.producing import produce_tracked
from tests.integration.faults.support import Expected, committed_total, conservation, read_outcomes, stream_messages
from tests.integration.harness import Lanes, ScorerProcess

pytestmark = [pytest.mark.faults, pytest.mark.soak, pytest.mark.timeout(1800)]
SOAK_EVENTS = 1_000_000
WARM_UP = 0.2  # of the events
MAX_GROWTH = 0.05
SAMPLE_EVERY_S = 1.0
MiB = 1024 * 1024


def test_a_million_events_through_one_worker_with_flat_memory(lanes: Lanes, tmp_path: Path, guarantee: str) -> None:
    started = time.monotonic()
    produced_ids: set[str] = set()

    def feed() -> Iterator[tuple[bytes | None, bytes | None]]:
        for key, value, event_id in stream_messages(SOAK_EVENTS, seed=207):
            produced_ids.add(event_id)
            yield key, value

    # The whole backlog first: librdkafka's prefetch queue then fills during the warm-up and stays full, so
    # what the curve shows after it is the worker's own memory, not a queue growing with the backlog.
    assert produce_tracked(lanes.bootstrap, lanes.input, feed(), track=False).count == SOAK_EVENTS
    produced_s = time.monotonic() - started
    curve: list[tuple[float, int, int]] = []  # seconds, events committed, RSS bytes
    with ScorerProcess(lanes, tmp_path, "--guarantee", guarantee) as scorer:
        assert scorer.process is not None
        pid = scorer.process.pid  # one worker runs in the scorer's own process
        done = 0
        while done < SOAK_EVENTS:
            assert scorer.process.poll() is None, f"scorer exited:\n{scorer.log[-3000:]}"
            assert time.monotonic() - started < 1500, f"only {done:,} events after 25 minutes"
            time.sleep(SAMPLE_EVERY_S)
            done = committed_total(lanes)
            curve.append((time.monotonic() - started, done, rss_bytes(pid)))
        scorer.stop()
    growth = _report(curve)
    assert growth < MAX_GROWTH, f"RSS grew {growth:.1%} after the warm-up"
    rate = SOAK_EVENTS / (curve[-1][0] - produced_s)
    note = f"RSS {growth:+.1%} after warm-up; ~{rate:,.0f} events/s; backlog produced in {produced_s:.0f} s"
    conservation(
        "7. soak: 1M events, one worker",
        Expected(frozenset(produced_ids)),
        read_outcomes(lanes),
        time.monotonic() - started,
        note,
        guarantee,
    )


def _report(curve: list[tuple[float, int, int]]) -> float:
    """Print the RSS curve by tenths of the run; return the growth from just after the warm-up to the end.

    Both ends are medians over a fifth of the run: the resident set saws up and down by a few percent with
    the garbage collector and librdkafka's buffers, and one sample at each end would measure that, not a leak.
    """
    print("\nsoak RSS curve (events committed -> worker VmRSS):")
    for tenth in range(1, 11):
        seconds, done, rss = next(p for p in curve if p[1] >= SOAK_EVENTS * tenth / 10)
        print(f"  {done:>9,} events  {seconds:6.0f} s  {rss / MiB:7.1f} MiB")
    early = [rss for _, done, rss in curve if SOAK_EVENTS * WARM_UP <= done < SOAK_EVENTS * (WARM_UP + 0.2)]
    late = [rss for _, done, rss in curve if done >= SOAK_EVENTS * 0.8]
    baseline, final = statistics.median(early), statistics.median(late)
    print(
        f"  median RSS at 20-40%: {baseline / MiB:.1f} MiB, at 80-100%: {final / MiB:.1f} MiB "
        f"({final / baseline - 1.0:+.1%}); peak {max(r for _, _, r in curve) / MiB:.1f} MiB"
    )
    return final / baseline - 1.0
