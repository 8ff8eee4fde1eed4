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

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from producer_tools.bench.challenger import challenger_env
from producer_tools.bench.cpu import CpuWatch
from producer_tools.bench.latency import LatencyResult, run_latency, run_soak
from producer_tools.bench.phases import (
    CURVE_SHARES,
    BenchPlan,
    RunResult,
    Say,
    fresh_lanes,
    measure_ceiling,
    preload,
    run_phase,
    workload,
)
from producer_tools.bench.probe import Lanes
from producer_tools.bench.report import relay_keys, report
from producer_tools.bench.switch import SwitchPlan, run_switches
from producer_tools.publishing.topics import ensure_topics

T = TypeVar("T")


@dataclass
class _Run:
    """One bench run: where it runs, its id (in every topic and group name) and the CPU others took per phase."""

    plan: BenchPlan
    bootstrap: str
    workdir: Path
    say: Say
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    outside: dict[str, float] = field(default_factory=dict)
    cpu_per_1k: dict[str, dict[str, float]] = field(default_factory=dict)
    kernel: dict[str, float] = field(default_factory=dict)

    def watched(self, phase: str, measure: Callable[[], T], events: float | None = None) -> T:
        """``measure()``, with the CPU other processes took meanwhile recorded under ``phase``, and (given the
        ``events`` it handles) the CPU seconds of each of the bench's roles per 1,000 of them."""
        with CpuWatch() as watch:
            result = measure()
        self.outside[phase] = watch.other_percent
        self.kernel[phase] = watch.kernel_percent
        if events:
            self.cpu_per_1k[phase] = {role: 1000 * s / events for role, s in sorted(watch.role_s.items())}
        return result

    def lanes(self, phase: str, input_topic: str | None = None) -> Lanes:
        return fresh_lanes(self.run_id, phase, input_topic)

    def phase(self, lanes: Lanes, workers: int, relay: bool = False) -> RunResult:
        return run_phase(self.bootstrap, lanes, workers, self.plan.events, self.plan, self.workdir, relay)

    def latency(self, rate: float, relay: bool = False) -> LatencyResult:
        return run_latency(self.bootstrap, self.run_id, rate, self.plan, self.workdir, relay)


def run_bench(plan: BenchPlan, bootstrap: str, workdir: Path, say: Say) -> dict[str, Any]:
    """Every phase, in order; returns the report (see ``producer_tools.bench.report`` for its keys)."""
    run = _Run(plan, bootstrap, workdir, say)
    shared, malformed, ceiling = _preload_and_ceiling(run)
    say("one worker")
    one = run.watched("one_worker", lambda: run.phase(shared, 1), plan.events)
    challenged = _with_challenger(run, shared) if plan.challenger is not None else {}
    say("two workers")
    two = run.watched("two_workers", lambda: run.phase(run.lanes("two", shared.input), 2), plan.events)
    say("relay baseline: the same topic, the scorer's Kafka settings, no scoring")
    relay = run.watched("relay", lambda: run.phase(run.lanes("relay", shared.input), 1, relay=True), plan.events)
    rate = round(one.events_per_s / 2)
    say(f"latency: offering {rate:,} events/s for {plan.latency_seconds:.0f} s, to the scorer and to the relay")
    latency = run.watched("latency", lambda: run.latency(rate))  # its window holds more than the paced events
    relay_latency = run.watched("relay_latency", lambda: run.latency(rate, relay=True))
    curve = _curve(run, one.events_per_s, latency) if plan.curve else []
    soak = None
    if plan.soak_events:
        say(f"soak: {plan.soak_events:,} events through one worker")
        soak = run.watched("soak", lambda: run_soak(bootstrap, run.run_id, plan, workdir))
    data = report(plan, malformed, ceiling, one, two, latency, soak)
    data |= relay_keys(one, relay, relay_latency, latency) | challenged
    return (
        data
        | {"curve": curve, "outside_cpu_percent": run.outside, "cpu_s_per_1k_events": run.cpu_per_1k}
        | {"kernel_cpu_percent": run.kernel}
    )


def _with_challenger(run: _Run, shared: Lanes) -> dict[str, Any]:
    """One worker on the preloaded topic with ``--challenger``'s set in the champion's shadow."""
    assert run.plan.challenger is not None
    run.say(f"one worker with the challenger {run.plan.challenger}")
    lanes = run.lanes("challenger", shared.input)
    ensure_topics(run.bootstrap, {lanes.output: run.plan.partitions, lanes.dlq: 1})  # models shadow checks it
    env = challenger_env(run.bootstrap, lanes, run.plan.challenger, run.workdir)
    plan, workdir = run.plan, run.workdir
    result = run.watched(
        "one_worker_challenger", lambda: run_phase(run.bootstrap, lanes, 1, plan.events, plan, workdir, env=env)
    )
    return {"one_worker_challenger_events_per_s": result.events_per_s, "one_worker_challenger": result.__dict__}


def _preload_and_ceiling(run: _Run) -> tuple[Lanes, int, dict[str, Any]]:
    """Build the events, preload the shared input topic, measure the engine's ceiling on the same bytes; the
    messages are dropped afterwards (a long run does not keep them)."""
    plan = run.plan
    run.say(f"building {plan.events:,} events ({plan.bad_ratio:.1%} malformed)")
    messages = list(workload(plan.events, plan.seed, plan.bad_ratio))
    malformed = sum(1 for m in messages if m.poison is not None)
    shared = run.lanes("one")
    ensure_topics(run.bootstrap, {shared.input: plan.partitions})
    run.say(f"preloading {shared.input} ({plan.partitions} partitions)")
    preload(run.bootstrap, shared.input, messages)
    run.say("ceiling: the engine alone, one process, no Kafka")
    values = [m.value for m in messages]
    ceiling = run.watched("ceiling", lambda: measure_ceiling(values, plan.config, run.workdir), plan.events)
    if plan.challenger is not None:
        run.say(f"ceiling with the challenger {plan.challenger}: the same bytes, the set in the champion's shadow")
        shadowed = run.watched(
            "ceiling_challenger", lambda: measure_ceiling(values, plan.config, run.workdir, plan.challenger)
        )
        ceiling = ceiling | {"with_challenger": shadowed}
    return shared, malformed, ceiling


def run_switch_bench(plan: BenchPlan, bootstrap: str, workdir: Path, say: Say, switch: SwitchPlan) -> dict[str, Any]:
    """``bench --switch``: one worker's rate measured on the preloaded topic (unless ``switch.rate`` is set),
    then an activation and a rollback at half that rate, for each guarantee."""
    run = _Run(plan, bootstrap, workdir, say)
    data: dict[str, Any] = {"outside_cpu_percent": run.outside}
    if not switch.rate:
        messages = list(workload(plan.events, plan.seed, plan.bad_ratio))
        shared = run.lanes("one")
        ensure_topics(bootstrap, {shared.input: plan.partitions})
        say(f"one worker over {plan.events:,} preloaded events: its capacity")
        preload(bootstrap, shared.input, messages)
        one = run.watched("one_worker", lambda: run.phase(shared, 1))
        data["one_worker_events_per_s"] = one.events_per_s
        switch = replace(switch, rate=round(one.events_per_s / 2))
    return data | {"switch": run_switches(bootstrap, run.run_id, plan, switch, workdir, say)}


def _curve(run: _Run, one_worker_rate: float, half: LatencyResult) -> list[dict[str, float]]:
    """The latency at each share of the one-worker rate (the 50% point is the latency phase already run)."""
    curve = []
    for share in CURVE_SHARES:
        rate = max(1, round(one_worker_rate * share))
        run.say(f"curve: {share:.0%} of one worker, {rate:,} events/s")
        point = half if share == 0.5 else run.latency(rate)
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
    return curve
