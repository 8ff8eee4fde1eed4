"""``crm-scorer bench``: throughput per core, scaling, latency and memory of the scorer, in one run.

Contributed to ``crm-scorer`` through the ``crm_scorer.commands`` entry point (the service lists plugins, it
never imports the tools). This module only declares the arguments; the work is imported when it runs, so
listing the scorer's commands stays cheap. Prints a table; ``--json PATH`` writes every number. Exits 2 on a
broker or usage error. It asserts nothing about timings: ``--quick`` is a smoke test, not a gate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

QUICK_EVENTS = 10_000
QUICK_LATENCY_S = 3.0
OUTSIDE_WARN_PERCENT = 10.0  # of one CPU


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure the scorer: ceiling, 1 and 2 workers, latency, memory")
    add = parser.add_argument
    add("--events", type=int, default=None, help="events preloaded (default 200,000; --quick 10,000)")
    add("--quick", action="store_true", help="a small run for CI smoke (timings are printed, never checked)")
    add("--bootstrap-servers", default=None, help="use this Kafka cluster (default: $KAFKA_BOOTSTRAP_SERVERS, "
        "else a local broker started for the run)")  # fmt: skip
    add("--broker", choices=("kafka", "tansu"), default=None, help="the local broker: Apache Kafka (default when "
        "java and mvn are there) or Tansu")  # fmt: skip
    add("--partitions", type=int, default=6, help="partitions of the input topic")
    add("--bad-ratio", type=float, default=0.01, help="share of malformed messages")
    add("--latency-seconds", type=float, default=None, help="length of the paced latency run (default 20 s)")
    add("--soak", type=int, default=0, metavar="N", help="also run one worker over N events and report memory")
    add("--config", type=Path, default=None, help="scorer.yaml for every scorer process")
    add("--seed", type=int, default=2026)
    add("--json", dest="json_path", type=Path, default=None, help="write the report here")
    add("--workdir", type=Path, default=None, help="keep the scorer logs here (default: a temporary directory)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from producer_tools.bench import BenchPlan, plot_curve, run_bench, write_json
    from producer_tools.broker import (
        BrokerError,
        BrokerKind,
        ExternalBroker,
        broker_from_env,
        kafka_unavailable_reason,
    )

    plan = BenchPlan(
        events=args.events or (QUICK_EVENTS if args.quick else 200_000),
        partitions=args.partitions,
        bad_ratio=args.bad_ratio,
        seed=args.seed,
        latency_seconds=args.latency_seconds or (QUICK_LATENCY_S if args.quick else 20.0),
        soak_events=args.soak,
        config=args.config,
        curve=not args.quick,
    )
    # the benchmarks are judged on Apache Kafka; Tansu only where it cannot start
    default: BrokerKind = "tansu" if kafka_unavailable_reason() else "kafka"
    broker = (ExternalBroker(args.bootstrap_servers) if args.bootstrap_servers
              else broker_from_env(kind=args.broker, default=default))  # fmt: skip
    try:
        with broker, tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            say(f"broker {broker.kind} {broker.version} at {broker.bootstrap_servers} {broker.settings}")
            data = run_bench(plan, broker.bootstrap_servers, workdir, say)
    except BrokerError as exc:
        print(f"crm-scorer bench: {exc}", file=sys.stderr)
        return 2
    data["machine"] = machine()
    data["broker"], data["broker_version"] = broker.kind, broker.version
    data["command"] = "crm-scorer " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "crm-scorer bench"
    print(table(data))
    if args.json_path is not None:
        write_json(args.json_path, data)
        if data.get("curve"):
            png = args.json_path.with_suffix(".curve.png")
            plotted = plot_curve(data["curve"], png)
            print(f"latency curve: {png}" if plotted else "latency curve: no PNG (matplotlib is not installed)")
    return 0


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "system": platform.platform(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}  # fmt: skip


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
        lines += ["", "latency curve (one worker, subscriber-side):", "| share | offered events/s | p50 ms | p99 ms |",
                  "|---:|---:|---:|---:|"]  # fmt: skip
        lines += [f"| {p['share']:.0%} | {p['offered_events_per_s']:,.0f} | {p['subscriber_p50_ms']:.1f} | "
                  f"{p['subscriber_p99_ms']:.1f} |" for p in d["curve"]]  # fmt: skip
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


def main(argv: list[str] | None = None) -> int:
    """``python -m producer_tools.bench_cmd``: the same command without the entry point."""
    parser = argparse.ArgumentParser(prog="crm-scorer")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
