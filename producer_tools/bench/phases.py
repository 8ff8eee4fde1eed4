"""``crm-scorer bench``: the scorer's throughput, scaling, latency and memory, measured in one run.

1. ``events`` synthetic events (v1 and v2 writers alternating, about 1% malformed) are encoded once and
   preloaded into a fresh input topic.
2. ``ceiling``: ``crm-scorer bench-engine`` scores those exact bytes in one process with no Kafka.
3. ``one_worker`` / ``two_workers``: ``crm-scorer run`` with 1 and 2 workers (fresh group and output topics
   each) consumes the preloaded topic; events/s from the broker timestamps of the first to the last output.
4. ``latency``: a fresh topic; a producer offers half the one-worker rate with live event times.
5. ``relay``: the baseline, ``producer_tools.bench.relay`` (the scorer's Kafka settings, no decoding or scoring) over
   the same preloaded topic, and at the same offered rate: the broker-and-client floor of both numbers.
6. ``curve`` (not with ``--quick``): the latency at 10%, 25%, 50% and 75% of the one-worker rate.
7. ``soak`` (optional): one worker over many events; its resident memory after the warm-up and at the end.

Latency is measured twice per result: to its broker timestamp (when the broker appended it), and to the moment
a subscriber in this process received it (``fetch.wait.max.ms`` 5), which is what a downstream service sees.

The tools drive the service only through its command line, so the service never imports the tools.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from producer_tools.bench.offer import live_stamped, offer
from producer_tools.bench.probe import (
    CpuWatch,
    Lanes,
    RelayProcess,
    ScorerProcess,
    Subscriber,
    committed_total,
    group_reader,
    read_back,
    rss_mb,
)
from producer_tools.bench.relay import relayed_time_ms
from producer_tools.publishing.poison import poison_kinds
from producer_tools.publishing.publisher import (
    OutboundMessage,
    event_encoders,
    event_messages,
    publish_messages,
)
from producer_tools.publishing.topics import ensure_topics
from producer_tools.servers.broker import BrokerError, free_port
from producer_tools.world import generate
from schemas import ResultDecoder

Say = Callable[[str], None]
_CHUNK = 20_000  # events generated per world call: a long run never holds them all
_POLL_S = 0.5
_RAMP_MS = 1000
_LENGTH = struct.Struct(">I")
_NO_VALUE = 0xFFFFFFFF
# A 900 KB value is a stress case, not traffic: 1% of a realistic mix does not carry dozens of them.
BENCH_POISON = tuple(k for k in poison_kinds() if k.name != "huge_string")
CURVE_SHARES = (0.1, 0.25, 0.5, 0.75)  # of the one-worker rate


@dataclass(frozen=True)
class BenchPlan:
    events: int = 200_000
    partitions: int = 6
    bad_ratio: float = 0.01
    seed: int = 2026
    latency_seconds: float = 20.0
    soak_events: int = 0
    config: Path | None = None
    curve: bool = True


@dataclass
class RunResult:
    """One ``crm-scorer run`` phase."""

    workers: int
    events: int
    outputs: int
    events_per_s: float
    peak_rss_mb: list[float]
    rebalances: int
    stage_us: dict[str, float] = field(default_factory=dict)


def world_events(count: int, seed: int) -> Iterator[dict[str, Any]]:
    """``count`` synthetic v2 events, generated ``_CHUNK`` at a time."""
    for chunk, start in enumerate(range(0, count, _CHUNK)):
        yield from generate(min(_CHUNK, count - start), seed + chunk, schema_version="v2").events


def workload(count: int, seed: int, bad_ratio: float) -> Iterator[OutboundMessage]:
    """The benchmark's messages: v1 and v2 writers in turn, ``bad_ratio`` of them malformed."""
    return event_messages(
        world_events(count, seed), event_encoders("mixed"), bad_ratio=bad_ratio, seed=seed, kinds=BENCH_POISON
    )


def fresh_lanes(run_id: str, phase: str, input_topic: str | None = None) -> Lanes:
    base = f"crm-bench-{run_id}-{phase}"
    return Lanes(input_topic or f"{base}-in", f"{base}-out", f"{base}-dlq", f"{base}-group")


def measure_ceiling(values: list[bytes | None], config: Path | None, workdir: Path) -> dict[str, Any]:
    """``crm-scorer bench-engine`` on ``values`` in a fresh process; its JSON measurement.

    Raises:
        BrokerError: the command failed (its output is in the message).
    """
    messages, out = workdir / "messages.bin", workdir / "ceiling.json"
    with messages.open("wb") as file:  # the format consumer.core.bench.read_messages reads: length-prefixed values
        for value in values:
            file.write(_LENGTH.pack(_NO_VALUE if value is None else len(value)) + (value or b""))
    args = [
        sys.executable,
        "-m",
        "consumer.commands.cli",
        "bench-engine",
        "--messages",
        str(messages),
        "--json",
        str(out),
    ]
    if config is not None:
        args += ["--config", str(config)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    messages.unlink()
    if done.returncode != 0:
        raise BrokerError(f"crm-scorer bench-engine failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(json.loads(out.read_text()))


def preload(bootstrap: str, topic: str, messages: list[OutboundMessage]) -> None:
    """Publish ``messages`` as fast as the broker takes them. Raises BrokerError if any was not delivered."""
    summary = publish_messages(bootstrap, topic, messages, flush_timeout_s=120)
    if summary.failed:
        raise BrokerError(f"preloading {topic}: {summary.failed} messages not delivered ({summary.first_error})")


def run_phase(
    bootstrap: str, lanes: Lanes, workers: int, total: int, plan: BenchPlan, workdir: Path, relay: bool = False
) -> RunResult:
    """Start ``crm-scorer run`` (or the relay) on a topic already holding ``total`` messages; measure until all
    are done."""
    ensure_topics(bootstrap, {lanes.output: plan.partitions, lanes.dlq: 1})
    port = free_port()
    scorer = start_process(bootstrap, lanes, workers, plan, workdir, port, relay)
    try:
        wait_until_done(bootstrap, lanes, total, plan.partitions, scorer)
        stages = {} if relay else scrape_stage_us(port)
        rebalances = scorer.rebalances()
    finally:
        scorer.stop()
    back = read_back(bootstrap, [lanes.output, lanes.dlq], total)
    peaks = sorted(scorer.peak_rss.values(), reverse=True)
    return RunResult(workers, total, back.count, back.events_per_s(), peaks, rebalances, stages)


def start_process(
    bootstrap: str, lanes: Lanes, workers: int, plan: BenchPlan, workdir: Path, port: int, relay: bool
) -> ScorerProcess:
    """``crm-scorer run`` with ``workers`` on ``lanes`` (metrics on ``port``), or the relay in its place."""
    log = workdir / f"{lanes.group}.log"
    if relay:
        return RelayProcess(bootstrap, lanes, log, plan.config)
    return ScorerProcess(bootstrap, lanes, workers, log, plan.config, port)


def wait_until_done(
    bootstrap: str,
    lanes: Lanes,
    total: int,
    partitions: int,
    scorer: ScorerProcess,
    on_sample: Callable[[int], None] | None = None,
) -> None:
    """Poll the group's committed offsets until ``total`` messages are done; sample the workers' memory."""
    reader = group_reader(bootstrap, lanes.group)
    deadline = time.monotonic() + 120 + total / 500
    try:
        while (done := committed_total(reader, lanes.input, partitions)) < total:
            scorer.check_alive()
            scorer.sample_peaks()
            if on_sample is not None:
                on_sample(done)
            if time.monotonic() > deadline:
                raise BrokerError(f"{lanes.group}: only {done} of {total} messages done; log: {scorer.log_path}")
            time.sleep(_POLL_S)
        scorer.sample_peaks()
    finally:
        reader.close()


def scrape_stage_us(port: int) -> dict[str, float]:
    """Per-event cost of each stage as the running scorer measured it (its ``/metrics``), in microseconds."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("crm_scorer_stage_seconds_"):
            continue
        name, _, value = line.rpartition(" ")
        stage = name.partition('stage="')[2].partition('"')[0]
        if name.startswith("crm_scorer_stage_seconds_sum"):
            sums[stage] = sums.get(stage, 0.0) + float(value)
        elif name.startswith("crm_scorer_stage_seconds_count"):
            counts[stage] = counts.get(stage, 0.0) + float(value)
    return {s: 1e6 * sums[s] / counts[s] for s in sums if counts.get(s)}


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
            measured_from_ms = started_ms + _RAMP_MS
            wait_until_done(bootstrap, lanes, warmup + delivered, plan.partitions, scorer)
            time.sleep(0.5)  # the last results on their way to the subscriber
        finally:
            arrivals = subscriber.close()
    finally:
        scorer.stop()
    # the relay relays the malformed messages too; the scorer dead-letters them
    expected = warmup + (len(templates) if relay else sum(1 for m in templates if m.poison is None))
    back = read_back(bootstrap, [lanes.output], expected, decode=event_ms)
    pairs = np.array([(t, e) for t, e in zip(back.timestamps_ms, back.values, strict=True) if e >= measured_from_ms])
    seen = np.array([(a, e) for a, e in arrivals if e >= measured_from_ms])
    if len(pairs) < 2 or len(seen) < 2:
        raise BrokerError(f"{lanes.output}: no result of the paced events came back")
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


def run_bench(plan: BenchPlan, bootstrap: str, workdir: Path, say: Say) -> dict[str, Any]:
    """Every phase, in order; returns the report (see ``producer_tools.commands.bench_cmd`` for its keys)."""
    run_id = uuid.uuid4().hex[:8]
    say(f"building {plan.events:,} events ({plan.bad_ratio:.1%} malformed)")
    messages = list(workload(plan.events, plan.seed, plan.bad_ratio))
    malformed = sum(1 for m in messages if m.poison is not None)
    shared = fresh_lanes(run_id, "one")
    ensure_topics(bootstrap, {shared.input: plan.partitions})
    say(f"preloading {shared.input} ({plan.partitions} partitions)")
    preload(bootstrap, shared.input, messages)
    outside: dict[str, float] = {}  # CPU other processes took during each phase
    say("ceiling: the engine alone, one process, no Kafka")
    with CpuWatch() as watch:
        ceiling = measure_ceiling([m.value for m in messages], plan.config, workdir)
    outside["ceiling"] = watch.other_percent
    del messages
    say("one worker")
    with CpuWatch() as watch:
        one = run_phase(bootstrap, shared, 1, plan.events, plan, workdir)
    outside["one_worker"] = watch.other_percent
    say("two workers")
    with CpuWatch() as watch:
        two = run_phase(bootstrap, fresh_lanes(run_id, "two", shared.input), 2, plan.events, plan, workdir)
    outside["two_workers"] = watch.other_percent
    say("relay baseline: the same topic, the scorer's Kafka settings, no scoring")
    with CpuWatch() as watch:
        relay = run_phase(
            bootstrap, fresh_lanes(run_id, "relay", shared.input), 1, plan.events, plan, workdir, relay=True
        )
    outside["relay"] = watch.other_percent
    rate = round(one.events_per_s / 2)
    say(f"latency: offering {rate:,} events/s for {plan.latency_seconds:.0f} s, to the scorer and to the relay")
    with CpuWatch() as watch:
        latency = run_latency(bootstrap, run_id, rate, plan, workdir)
    outside["latency"] = watch.other_percent
    with CpuWatch() as watch:
        relay_latency = run_latency(bootstrap, run_id, rate, plan, workdir, relay=True)
    outside["relay_latency"] = watch.other_percent
    curve: list[dict[str, float]] = []
    if plan.curve:
        for share in CURVE_SHARES:
            point_rate = max(1, round(one.events_per_s * share))
            say(f"curve: {share:.0%} of one worker, {point_rate:,} events/s")
            point = latency if share == 0.5 else run_latency(bootstrap, run_id, point_rate, plan, workdir)
            curve.append(
                {
                    "share": share,
                    "offered_events_per_s": point.offered_events_per_s,
                    "subscriber_p50_ms": point.subscriber_p50_ms,
                    "subscriber_p99_ms": point.subscriber_p99_ms,
                    "p50_ms": point.p50_ms,
                    "p99_ms": point.p99_ms,
                }
            )
    soak = None
    if plan.soak_events:
        say(f"soak: {plan.soak_events:,} events through one worker")
        with CpuWatch() as watch:
            soak = run_soak(bootstrap, run_id, plan, workdir)
        outside["soak"] = watch.other_percent
    data = report(plan, malformed, ceiling, one, two, latency, soak)
    return data | relay_keys(one, relay, relay_latency, latency) | {"curve": curve, "outside_cpu_percent": outside}


def relay_keys(
    one: RunResult, relay: RunResult, relay_latency: LatencyResult, latency: LatencyResult
) -> dict[str, Any]:
    """The relay baseline and what the scorer adds over it at the same offered rate (subscriber-side)."""
    return {
        "relay_events_per_s": relay.events_per_s,
        "relay_latency_p50_ms": relay_latency.subscriber_p50_ms,
        "relay_latency_p99_ms": relay_latency.subscriber_p99_ms,
        "relay_latency_broker_p50_ms": relay_latency.p50_ms,
        "relay_latency_broker_p99_ms": relay_latency.p99_ms,
        "added_latency_p50_ms": latency.subscriber_p50_ms - relay_latency.subscriber_p50_ms,
        "added_latency_p99_ms": latency.subscriber_p99_ms - relay_latency.subscriber_p99_ms,
        "ratio_one_worker_to_relay": _ratio(one.events_per_s, relay.events_per_s),
        "relay": {"run": relay.__dict__, "latency": relay_latency.__dict__},
    }


def plot_curve(curve: list[dict[str, float]], path: Path) -> bool:
    """The latency curve as a PNG (matplotlib, from the dev extra); False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rates = [p["offered_events_per_s"] for p in curve]
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(rates, [p["subscriber_p50_ms"] for p in curve], marker="o", label="p50 (subscriber)")
    axes.plot(rates, [p["subscriber_p99_ms"] for p in curve], marker="o", label="p99 (subscriber)")
    axes.set_xlabel("offered events/s (one worker)")
    axes.set_ylabel("event time to subscriber, ms")
    axes.set_title("crm-scorer latency against load")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def report(
    plan: BenchPlan,
    malformed: int,
    ceiling: dict[str, Any],
    one: RunResult,
    two: RunResult,
    latency: LatencyResult,
    soak: SoakResult | None,
) -> dict[str, Any]:
    """The JSON report: the headline keys first, then the details of each phase."""
    peak = max(itertools.chain(one.peak_rss_mb, two.peak_rss_mb), default=0.0)
    stages = {**ceiling["stage_us"], **ceiling["model_us"], "publish": one.stage_us.get("publish")}
    return {
        "events": plan.events,
        "malformed": malformed,
        "partitions": plan.partitions,
        "ceiling_events_per_s": ceiling["events_per_s"],
        "one_worker_events_per_s": one.events_per_s,
        "two_workers_events_per_s": two.events_per_s,
        "ratio_one_worker_to_ceiling": _ratio(one.events_per_s, ceiling["events_per_s"]),
        "scaling_two_over_one": _ratio(two.events_per_s, one.events_per_s),
        "latency_offered_events_per_s": latency.offered_events_per_s,
        "latency_p50_ms": latency.p50_ms,
        "latency_p95_ms": latency.p95_ms,
        "latency_p99_ms": latency.p99_ms,
        "latency_max_ms": latency.max_ms,
        "latency_subscriber_p50_ms": latency.subscriber_p50_ms,
        "latency_subscriber_p95_ms": latency.subscriber_p95_ms,
        "latency_subscriber_p99_ms": latency.subscriber_p99_ms,
        "latency_subscriber_max_ms": latency.subscriber_max_ms,
        "latency_results": latency.results,
        "peak_rss_mb": peak,
        "peak_rss_mb_per_worker": {"one_worker": one.peak_rss_mb, "two_workers": two.peak_rss_mb},
        "trees_per_bank": ceiling["trees"],
        "stage_us_per_event": stages,
        "ceiling": ceiling,
        "runs": {"one_worker": one.__dict__, "two_workers": two.__dict__},
        "soak": None if soak is None else soak.__dict__,
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
