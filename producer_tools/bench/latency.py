"""The paced phases of the bench: latency at an offered rate (to the scorer or the relay) and the memory soak."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from producer_tools.bench.offer import live_stamped, offer
from producer_tools.bench.phases import (
    RAMP_MS,
    BenchPlan,
    fresh_lanes,
    preload,
    start_process,
    wait_until_done,
    workload,
)
from producer_tools.bench.probe import ScorerProcess, Subscriber, read_back, rss_mb
from producer_tools.bench.relay import relayed_time_ms
from producer_tools.publishing.publisher import publish_messages
from producer_tools.publishing.topics import ensure_topics
from producer_tools.servers.broker import BrokerError, free_port
from schemas import ResultDecoder


@dataclass
class LatencyResult:
    offered_events_per_s: float
    results: int
    p50_ms: float  # to the result's broker timestamp
    p95_ms: float
    p99_ms: float
    max_ms: float
    subscriber_p50_ms: float  # to the moment a subscriber received it
    subscriber_p95_ms: float
    subscriber_p99_ms: float
    subscriber_max_ms: float


def run_latency(
    bootstrap: str, run_id: str, rate: float, plan: BenchPlan, workdir: Path, relay: bool = False
) -> LatencyResult:
    """Offer ``rate`` events/s with live event times to one worker (or the relay); latency = result timestamp -
    event time, and subscriber arrival - event time.

    The messages are built before the clock starts and stamped as they go (``live_stamped``), so the offering
    producer takes little CPU from the scorer; it batches as the tools' producer does (``linger.ms=5``). The
    first second is left out: it holds the producer's connection set-up, not the scorer.
    """
    lanes = fresh_lanes(run_id, f"latency-{'relay' if relay else 'scorer'}-{round(rate)}")
    ensure_topics(bootstrap, {lanes.input: plan.partitions, lanes.output: plan.partitions, lanes.dlq: 1})
    scorer = start_process(bootstrap, lanes, 1, plan, workdir, free_port(), relay)
    warmup = 1000
    templates = list(workload(max(1, int(rate * plan.latency_seconds)), plan.seed + 104729, plan.bad_ratio))
    decoder = ResultDecoder()
    event_ms: Callable[[bytes], int] = relayed_time_ms if relay else lambda v: _millis(decoder.decode(v)["event_time"])
    try:
        preload(bootstrap, lanes.input, list(workload(warmup, plan.seed + 7919, 0.0)))
        wait_until_done(bootstrap, lanes, warmup, plan.partitions, scorer)  # joined, models warm
        subscriber = Subscriber(bootstrap, lanes.output, event_ms)
        try:
            delivered, started_ms = offer(bootstrap, lanes.input, live_stamped(templates), rate)
            measured_from_ms = started_ms + RAMP_MS
            wait_until_done(bootstrap, lanes, warmup + delivered, plan.partitions, scorer)
            time.sleep(0.5)  # the last results on their way to the subscriber
        finally:
            arrivals = subscriber.close()
    finally:
        scorer.stop()
    # the relay relays the malformed messages too; the scorer dead-letters them
    expected = warmup + (len(templates) if relay else sum(1 for m in templates if m.poison is None))
    back = read_back(bootstrap, [lanes.output], expected, decode=event_ms)
    timed = [(t, e) for t, e in zip(back.timestamps_ms, back.values, strict=True) if e >= measured_from_ms]
    seen = [(a, e) for a, e in arrivals if e >= measured_from_ms]
    return _latencies(np.array(timed), np.array(seen), lanes.output)


def _latencies(pairs: np.ndarray, seen: np.ndarray, topic: str) -> LatencyResult:
    """Percentiles of (broker timestamp, event time) ``pairs`` and of (subscriber arrival, event time) ``seen``.

    Raises:
        BrokerError: fewer than two of either came back.
    """
    if len(pairs) < 2 or len(seen) < 2:
        raise BrokerError(f"{topic}: no result of the paced events came back")
    latencies, received = pairs[:, 0] - pairs[:, 1], seen[:, 0] - seen[:, 1]
    span_s = (pairs[:, 1].max() - pairs[:, 1].min()) / 1000
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99]).tolist()
    s50, s95, s99 = np.percentile(received, [50, 95, 99]).tolist()
    offered = (len(pairs) - 1) / span_s if span_s > 0 else 0.0
    return LatencyResult(
        offered, len(pairs), p50, p95, p99, float(latencies.max()), s50, s95, s99, float(received.max())
    )


def _millis(when: dt.datetime) -> int:
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass
class SoakResult:
    events: int
    warmup_events: int
    rss_after_warmup_mb: float
    rss_end_mb: float
    peak_rss_mb: float
    growth_mb: float
    samples: list[tuple[int, float]]  # (messages done, resident MiB)


def run_soak(bootstrap: str, run_id: str, plan: BenchPlan, workdir: Path) -> SoakResult:
    """One worker over ``plan.soak_events`` preloaded events; its memory sampled against its progress.

    Preloaded, so the worker runs full batches from start to end (a worker that catches up with its producer
    runs small batches and holds less). The warm-up covers the first 20% of the events and at least the dedup
    cache's default capacity (100,000 applications), which legitimately grows until it is full.
    """
    lanes = fresh_lanes(run_id, "soak")
    total = plan.soak_events
    ensure_topics(bootstrap, {lanes.input: plan.partitions, lanes.output: plan.partitions, lanes.dlq: 1})
    summary = publish_messages(
        bootstrap, lanes.input, workload(total, plan.seed + 15485863, plan.bad_ratio), flush_timeout_s=300
    )
    if summary.failed:
        raise BrokerError(f"preloading {lanes.input}: {summary.failed} messages not delivered")
    scorer = ScorerProcess(bootstrap, lanes, 1, workdir / f"{lanes.group}.log", plan.config, free_port())
    samples: list[tuple[int, float]] = []

    def sample(done: int) -> None:
        rss = rss_mb(scorer.process.pid)
        if rss is not None and done > 0:
            samples.append((done, rss))

    try:
        wait_until_done(bootstrap, lanes, total, plan.partitions, scorer, sample)
        sample(total)
    finally:
        scorer.stop()
    warmup = min(total, max(total // 5, 150_000))
    after = [rss for done, rss in samples if done >= warmup] or [samples[-1][1]]
    peak = max(scorer.peak_rss.values(), default=0.0)
    return SoakResult(total, warmup, after[0], after[-1], peak, after[-1] - after[0], samples)
