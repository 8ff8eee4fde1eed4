"""The bench's report: the machine it ran on and the printed summary of every measure."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path
from typing import Any

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
    if d.get("curve"):
        lines += [
            "",
            "latency curve (one worker, subscriber-side):",
            "| share | offered events/s | p50 ms | p99 ms |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {p['share']:.0%} | {p['offered_events_per_s']:,.0f} | {p['subscriber_p50_ms']:.1f} | "
            f"{p['subscriber_p99_ms']:.1f} |"
            for p in d["curve"]
        ]
    soak = d.get("soak")
    if soak:
        lines.append(
            f"{'soak ' + n(soak['events']) + ' events':<30} RSS {soak['rss_after_warmup_mb']:.0f} MiB after "
            f"{soak['warmup_events']:,} -> {soak['rss_end_mb']:.0f} MiB at the end "
            f"({soak['growth_mb']:+.1f} MiB)"
        )
    stages = "  ".join(f"{k} {v:.1f}" for k, v in d["stage_us_per_event"].items() if v is not None)
    lines += ["", f"us/event: {stages}"]
    outside = d.get("outside_cpu_percent") or {}
    if outside:
        lines.append("CPU taken by other processes: " + "  ".join(f"{k} {v:.0f}%" for k, v in outside.items()))
        if max(outside.values()) > OUTSIDE_WARN_PERCENT:
            lines.append("warning: other processes competed for the CPU; those phases read low")
    return "\n".join(lines)
