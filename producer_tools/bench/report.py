"""The bench's report: its JSON keys, the machine it ran on, the printed summary and the latency curve's plot."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import platform
from pathlib import Path
from typing import Any

from producer_tools.bench.latency import LatencyResult, SoakResult
from producer_tools.bench.phases import BenchPlan, RunResult

OUTSIDE_WARN_PERCENT = 10.0  # of one CPU


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "system": platform.platform(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def table(d: dict[str, Any]) -> str:
    """The printed summary: one line per measure, then the per-stage costs."""
    n = lambda v: "n/a" if v is None else f"{v:,.0f}"  # noqa: E731
    lines = [
        f"crm-scorer bench: {d['events']:,} events ({d['malformed']:,} malformed), {d['partitions']} partitions, "
        f"{d['machine']['cpus']} CPUs, {d['machine']['date']}",
        f"models: {', '.join(f'{b} {t} trees' for b, t in d['trees_per_bank'].items())} + lead",
        "",
        f"{'ceiling (engine, 1 process)':<30} {n(d['ceiling_events_per_s']):>10} events/s",
        f"{'one worker':<30} {n(d['one_worker_events_per_s']):>10} events/s"
        f"   {d['ratio_one_worker_to_ceiling']:.2f} of the ceiling",
        f"{'two workers':<30} {n(d['two_workers_events_per_s']):>10} events/s"
        f"   {d['scaling_two_over_one']:.2f} x one worker",
        f"{'relay (no scoring)':<30} {n(d['relay_events_per_s']):>10} events/s"
        f"   one worker = {d['ratio_one_worker_to_relay']:.2f} x the relay",
        f"latency at {n(d['latency_offered_events_per_s'])} events/s, event time to:",
        f"{'  subscriber (scorer)':<30} p50 {d['latency_subscriber_p50_ms']:.1f} ms   "
        f"p95 {d['latency_subscriber_p95_ms']:.1f} ms   p99 {d['latency_subscriber_p99_ms']:.1f} ms",
        f"{'  subscriber (relay)':<30} p50 {d['relay_latency_p50_ms']:.1f} ms   p99 {d['relay_latency_p99_ms']:.1f} ms"
        f"   added by the scorer: p50 {d['added_latency_p50_ms']:+.1f} ms, p99 {d['added_latency_p99_ms']:+.1f} ms",
        f"{'  broker timestamp (scorer)':<30} p50 {d['latency_p50_ms']:.1f} ms   p95 {d['latency_p95_ms']:.1f} ms   "
        f"p99 {d['latency_p99_ms']:.1f} ms",
        f"{'peak RSS per worker':<30} {d['peak_rss_mb']:>10.0f} MiB",
    ]
    if "challenger_us_per_event" in d:
        own = "  ".join(f"{k} {v:.1f}" for k, v in d["challenger_models_us_per_event"].items())
        lines.append(
            f"{'ceiling with the challenger':<30} {n(d['ceiling_challenger_events_per_s']):>10} events/s"
            f"   challenger {d['challenger_us_per_event']:+.1f} us/event ({own})"
        )
        lines.append(
            f"{'one worker with the challenger':<30} {n(d['one_worker_challenger_events_per_s']):>10} events/s"
        )
    lines += _curve_lines(d.get("curve") or [])
    soak = d.get("soak")
    if soak:
        lines.append(
            f"{'soak ' + n(soak['events']) + ' events':<30} RSS {soak['rss_after_warmup_mb']:.0f} MiB after "
            f"{soak['warmup_events']:,} -> {soak['rss_end_mb']:.0f} MiB at the end "
            f"({soak['growth_mb']:+.1f} MiB)"
        )
    stages = "  ".join(f"{k} {v:.1f}" for k, v in d["stage_us_per_event"].items() if v is not None)
    lines += ["", f"us/event: {stages}", *_cpu_lines(d.get("cpu_s_per_1k_events") or {})]
    lines += _outside_lines(d.get("outside_cpu_percent") or {}, d.get("kernel_cpu_percent") or {})
    return "\n".join(lines)


def _curve_lines(curve: list[dict[str, float]]) -> list[str]:
    """The latency curve as a Markdown table (nothing without a curve)."""
    if not curve:
        return []
    header = ["", "latency curve (one worker, subscriber-side):", "| share | offered events/s | p50 ms | p99 ms |"]
    rows = [
        f"| {p['share']:.0%} | {p['offered_events_per_s']:,.0f} | {p['subscriber_p50_ms']:.1f} | "
        f"{p['subscriber_p99_ms']:.1f} |"
        for p in curve
    ]
    return [*header, "|---:|---:|---:|---:|", *rows]


def _cpu_lines(per_1k: dict[str, dict[str, float]]) -> list[str]:
    """CPU seconds per 1,000 events of each role (scorer, broker, relay, engine, bench) in each phase: on a
    2-core machine that also runs the broker, scaling is judged by cost per event, not by events/s alone."""
    if not per_1k:
        return []
    lines = ["CPU seconds per 1,000 events (bench = load offered and results read back):"]
    for phase, roles in per_1k.items():
        shown = "  ".join(f"{role} {seconds:.3f}" for role, seconds in roles.items() if seconds >= 0.0005)
        lines.append(f"  {phase:<14} {shown}")
    return lines


def _outside_lines(outside: dict[str, float], kernel: dict[str, float] | None = None) -> list[str]:
    """The CPU other processes took per phase (and, where known, how much of it was the kernel's interrupt and
    softirq time, which no process owns), and a warning when it was enough to skew a phase."""
    if not outside:
        return []
    kernel = kernel or {}
    shown = [f"{k} {v:.0f}%" + (f" (kernel {kernel[k]:.0f}%)" if k in kernel else "") for k, v in outside.items()]
    lines = ["CPU taken by other processes: " + "  ".join(shown)]
    if max(outside.values()) > OUTSIDE_WARN_PERCENT:
        lines.append("warning: other processes competed for the CPU; those phases read low")
    return lines


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
    } | challenger_keys(ceiling)


def challenger_keys(ceiling: dict[str, Any]) -> dict[str, Any]:
    """With ``--challenger``: the ceiling with it, its models' own cost (``<model>:challenger``) and the whole
    difference per event between the two ceilings (the challenger's models plus its comparison)."""
    shadowed = ceiling.get("with_challenger")
    if not shadowed:
        return {}
    own = {k: v for k, v in shadowed["model_us"].items() if k.endswith(":challenger")}
    return {
        "ceiling_challenger_events_per_s": shadowed["events_per_s"],
        "challenger_models_us_per_event": own,
        "challenger_us_per_event": 1e6 / shadowed["events_per_s"] - 1e6 / ceiling["events_per_s"],
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
