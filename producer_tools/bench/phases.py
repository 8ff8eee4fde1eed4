"""The bench's phases: its plan, its workload, and one ``crm-scorer run`` (or relay) phase from start to done.

The whole run (``producer_tools.bench.run``) strings these together; the latency and soak phases live in
``producer_tools.bench.latency``. The tools drive the service only through its command line.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from producer_tools.bench.probe import (
    Lanes,
    RelayProcess,
    ScorerProcess,
    committed_total,
    group_reader,
    read_back,
)
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

Say = Callable[[str], None]
_CHUNK = 20_000  # events generated per world call: a long run never holds them all
_POLL_S = 0.5
RAMP_MS = 1000  # the first second of a paced run holds the producer's set-up, not the scorer
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
    challenger: Path | None = None  # a model set scored in the champion's shadow by a second ceiling run


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


def measure_ceiling(
    values: list[bytes | None], config: Path | None, workdir: Path, challenger: Path | None = None
) -> dict[str, Any]:
    """``crm-scorer bench-engine`` on ``values`` in a fresh process (with ``challenger``'s set in the champion's
    shadow when given); its JSON measurement.

    Raises:
        BrokerError: the command failed (its output is in the message).
    """
    messages, out = workdir / "messages.bin", workdir / "ceiling.json"
    with messages.open("wb") as file:  # the format consumer.commands.engine_bench.read_messages reads
        for value in values:
            file.write(_LENGTH.pack(_NO_VALUE if value is None else len(value)) + (value or b""))
    args = bench_engine_argv(messages, out, config)
    if challenger is not None:
        args += ["--challenger", str(challenger)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    messages.unlink()
    if done.returncode != 0:
        raise BrokerError(f"crm-scorer bench-engine failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(json.loads(out.read_text()))


def bench_engine_argv(messages: Path, out: Path, config: Path | None, *extra: str) -> list[str]:
    """``crm-scorer bench-engine`` on ``messages`` in a fresh interpreter, its JSON into ``out``."""
    args = [sys.executable, "-m", "consumer.commands.cli", "bench-engine", "--messages", str(messages)]
    args += [*extra, "--json", str(out)]
    return args + (["--config", str(config)] if config is not None else [])


def preload(bootstrap: str, topic: str, messages: list[OutboundMessage]) -> None:
    """Publish ``messages`` as fast as the broker takes them. Raises BrokerError if any was not delivered."""
    summary = publish_messages(bootstrap, topic, messages, flush_timeout_s=120)
    if summary.failed:
        raise BrokerError(f"preloading {topic}: {summary.failed} messages not delivered ({summary.first_error})")


def run_phase(
    bootstrap: str,
    lanes: Lanes,
    workers: int,
    total: int,
    plan: BenchPlan,
    workdir: Path,
    relay: bool = False,
    env: dict[str, str] | None = None,
) -> RunResult:
    """Start ``crm-scorer run`` (or the relay; with ``env`` added to its environment) on a topic already holding
    ``total`` messages; measure until all are done."""
    ensure_topics(bootstrap, {lanes.output: plan.partitions, lanes.dlq: 1})
    port = free_port()
    scorer = start_process(bootstrap, lanes, workers, plan, workdir, port, relay, env)
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
    bootstrap: str,
    lanes: Lanes,
    workers: int,
    plan: BenchPlan,
    workdir: Path,
    port: int,
    relay: bool,
    env: dict[str, str] | None = None,
) -> ScorerProcess:
    """``crm-scorer run`` with ``workers`` on ``lanes`` (metrics on ``port``), or the relay in its place."""
    log = workdir / f"{lanes.group}.log"
    if relay:
        return RelayProcess(bootstrap, lanes, log, plan.config)
    return ScorerProcess(bootstrap, lanes, workers, log, plan.config, port, extra_env=env)


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
