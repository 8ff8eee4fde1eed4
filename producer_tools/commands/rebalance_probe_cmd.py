"""``crm-producer rebalance-probe``: the pause that scaling a scorer group 1 -> 2 -> 3 workers causes, measured
for the classic and the KIP-848 ``consumer`` group protocol.

Prints a table and, with ``--json``, writes every number; what each column measures is in
:mod:`producer_tools.bench.rebalance`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from producer_tools.bench.cpu import CpuWatch
from producer_tools.bench.rebalance import PROTOCOLS, ProbePlan, format_table, run_probe
from producer_tools.errors import BrokerError
from producer_tools.servers.apache_kafka import ApacheKafka
from producer_tools.servers.broker import Broker, ExternalBroker


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rebalance-probe",
        help="measure the pause of scaling 1 -> 2 -> 3 scorer "
        "workers with the classic and the KIP-848 consumer group protocol",
    )
    add = parser.add_argument
    add("--rate", type=float, default=1000.0, help="events per second offered throughout (default 1000)")
    add("--workers", type=int, default=3, help="scale up to this many worker processes (default 3)")
    add("--partitions", type=int, default=6, help="partitions of the input topic (default 6)")
    add("--baseline", type=float, default=5.0, help="seconds of the steady one-worker window (default 5)")
    add("--settle", type=float, default=12.0, help="seconds after each step's full assignment (default 12)")
    add("--rounds", type=int, default=1, help="repeat both protocols this often (default 1)")
    add("--protocol", action="append", choices=PROTOCOLS, help="only this protocol (repeatable; default both)")
    add("--bootstrap-servers", default=None, help="use this Kafka 4.x cluster (default: start Apache Kafka)")
    add("--config", type=Path, default=None, help="scorer.yaml for every worker")
    add("--json", dest="json_path", type=Path, default=None, help="write the results here")
    add("--workdir", type=Path, default=None, help="keep the worker logs here (default: a temporary directory)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    plan = ProbePlan(
        rate=args.rate,
        partitions=args.partitions,
        workers=args.workers,
        baseline_s=args.baseline,
        settle_s=args.settle,
        rounds=args.rounds,
        protocols=tuple(args.protocol or PROTOCOLS),
        config=args.config,
    )
    broker: Broker = ExternalBroker(args.bootstrap_servers) if args.bootstrap_servers else ApacheKafka()
    started = time.monotonic()
    try:
        with broker, tempfile.TemporaryDirectory(prefix="crm-rebalance-") as tmp, CpuWatch() as cpu:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            say(f"broker {broker.kind} {broker.version} at {broker.bootstrap_servers}")
            results = run_probe(plan, broker.bootstrap_servers, workdir, say)
    except BrokerError as exc:
        print(f"crm-producer rebalance-probe: {exc}", file=sys.stderr)
        return 2
    seconds = time.monotonic() - started
    command = "crm-producer " + (shlex.join(sys.argv[1:]) or "rebalance-probe")
    print(
        f"{command}: {broker.kind} {broker.version}, {plan.partitions} partitions, {plan.rate:,.0f} events/s, "
        f"{os.cpu_count()} CPUs, {seconds:.0f} s"
    )
    print("\n".join(format_table(results)))
    print(f"CPU taken by other processes during the run: {cpu.other_percent:.0f}% of one CPU (average)")
    if args.json_path is not None:
        data = {
            "plan": {**asdict(plan), "config": str(plan.config) if plan.config else None},
            "broker": {"kind": broker.kind, "version": broker.version},
            "seconds": seconds,
            "outside_cpu_percent": cpu.other_percent,
            "results": [asdict(r) for r in results],
        }
        args.json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0


def say(text: str) -> None:
    print(f"rebalance-probe: {text}", file=sys.stderr, flush=True)
