"""``crm-scorer bench``: throughput per core, scaling, latency and memory of the scorer, in one run.

Contributed to ``crm-scorer`` through the ``crm_scorer.commands`` entry point (the service lists plugins, it
never imports the tools). This module only declares the arguments; the work is imported when it runs, so
listing the scorer's commands stays cheap. Prints a table; ``--json PATH`` writes every number. Exits 2 on a
broker or usage error. It asserts nothing about timings: ``--quick`` is a smoke test, not a gate.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producer_tools.bench.phases import BenchPlan

QUICK_EVENTS = 10_000
QUICK_LATENCY_S = 3.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure the scorer: ceiling, 1 and 2 workers, latency, memory")
    add = parser.add_argument
    add("--events", type=int, default=None, help="events preloaded (default 200,000; --quick 10,000)")
    add("--quick", action="store_true", help="a small run for CI smoke (timings are printed, never checked)")
    add(
        "--bootstrap-servers",
        default=None,
        help="use this Kafka cluster (default: $KAFKA_BOOTSTRAP_SERVERS, else a local broker started for the run)",
    )
    add(
        "--broker",
        choices=("kafka", "tansu"),
        default=None,
        help="the local broker: Apache Kafka (default when java and mvn are there) or Tansu",
    )
    add("--partitions", type=int, default=6, help="partitions of the input topic")
    add("--bad-ratio", type=float, default=0.01, help="share of malformed messages")
    add("--latency-seconds", type=float, default=None, help="length of the paced latency run (default 20 s)")
    add("--soak", type=int, default=0, metavar="N", help="also run one worker over N events and report memory")
    add("--config", type=Path, default=None, help="scorer.yaml for every scorer process")
    add("--seed", type=int, default=2026, help="the synthetic world's seed")
    add("--json", dest="json_path", type=Path, default=None, help="write the report here")
    add("--workdir", type=Path, default=None, help="keep the scorer logs here (default: a temporary directory)")
    add(
        "--challenger",
        type=Path,
        default=None,
        metavar="DIR",
        help="also the ceiling and one worker with this set as challenger",
    )
    add("--switch", action="store_true", help="instead: an activation and a rollback under load, both guarantees")
    add("--switch-rate", type=float, default=None, help="--switch: events/s offered (default: half of one worker)")
    add("--switch-seconds", type=float, default=None, help="--switch: seconds of load per guarantee (default 30)")
    add(
        "--switch-guarantee",
        choices=("at_least_once", "exactly_once", "both"),
        default="both",
        help="--switch: the guarantee(s) measured (default both)",
    )
    add("--train-events", type=int, default=None, help="--switch: crm-train --count of the second set (20,000)")
    add(
        "--instructions",
        action="store_true",
        help="instead: the engine's instructions per event and per stage under valgrind's callgrind (no broker; "
        "--events default 2,000)",
    )
    add("--batch-size", type=int, default=1000, help="--instructions: the engine's batch size")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.instructions:
        return _instructions(args)
    from producer_tools.bench.report import machine, table
    from producer_tools.bench.switch import switch_table
    from producer_tools.servers.broker import BrokerError, BrokerKind, ExternalBroker, broker_from_env
    from producer_tools.servers.kafka_jars import kafka_unavailable_reason

    # the benchmarks are judged on Apache Kafka; Tansu only where it cannot start
    default: BrokerKind = "tansu" if kafka_unavailable_reason() else "kafka"
    broker = (
        ExternalBroker(args.bootstrap_servers)
        if args.bootstrap_servers
        else broker_from_env(kind=args.broker, default=default)
    )
    try:
        with broker, tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            say(f"broker {broker.kind} {broker.version} at {broker.bootstrap_servers} {broker.settings}")
            data = _measure(args, broker.bootstrap_servers, workdir)
    except BrokerError as exc:
        print(f"crm-scorer bench: {exc}", file=sys.stderr)
        return 2
    data["machine"] = machine()
    data["broker"], data["broker_version"] = broker.kind, broker.version
    data["command"] = "crm-scorer " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "crm-scorer bench"
    print(switch_table(data["switch"]) if args.switch else table(data))
    if args.json_path is not None:
        _write(args.json_path, data)
    return 0


def _instructions(args: argparse.Namespace) -> int:
    """``--instructions``: count, print the table, write the JSON."""
    from producer_tools.bench.instructions import count_instructions, instruction_table
    from producer_tools.bench.report import machine
    from producer_tools.errors import InstructionCountError

    with tempfile.TemporaryDirectory(prefix="crm-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        events = args.events or 2000
        say(f"instructions: {events:,} events under callgrind (a few minutes)")
        try:
            count = count_instructions(workdir, events, args.seed, args.bad_ratio, args.batch_size, args.config)
        except InstructionCountError as exc:
            print(f"crm-scorer bench: {exc}", file=sys.stderr)
            return 2
    print(instruction_table(count))
    if args.json_path is not None:
        _write(args.json_path, {"instructions": count.as_dict(), "machine": machine()})
    return 0


def _measure(args: argparse.Namespace, bootstrap: str, workdir: Path) -> dict[str, Any]:
    """The full bench, or with ``--switch`` the switch under load."""
    from producer_tools.bench.run import run_bench, run_switch_bench
    from producer_tools.bench.switch import GUARANTEES, SwitchPlan

    if not args.switch:
        return run_bench(_plan(args), bootstrap, workdir, say)
    switch = SwitchPlan(
        rate=args.switch_rate or 0.0,
        seconds=args.switch_seconds or (QUICK_LATENCY_S * 2 if args.quick else 30.0),
        train_events=args.train_events or (3000 if args.quick else 20_000),
        guarantees=GUARANTEES if args.switch_guarantee == "both" else (args.switch_guarantee,),
    )
    return run_switch_bench(_plan(args), bootstrap, workdir, say, switch)


def _plan(args: argparse.Namespace) -> BenchPlan:
    from producer_tools.bench.phases import BenchPlan

    return BenchPlan(
        events=args.events or (QUICK_EVENTS if args.quick else 200_000),
        partitions=args.partitions,
        bad_ratio=args.bad_ratio,
        seed=args.seed,
        latency_seconds=args.latency_seconds or (QUICK_LATENCY_S if args.quick else 20.0),
        soak_events=args.soak,
        config=args.config,
        curve=not args.quick,
        challenger=args.challenger,
    )


def _write(path: Path, data: dict[str, Any]) -> None:
    """The JSON report, and the latency curve's PNG beside it when there is a curve."""
    from producer_tools.bench.report import plot_curve, write_json

    write_json(path, data)
    if data.get("curve"):
        png = path.with_suffix(".curve.png")
        plotted = plot_curve(data["curve"], png)
        print(f"latency curve: {png}" if plotted else "latency curve: no PNG (matplotlib is not installed)")


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m producer_tools.commands.bench_cmd``: the same command without the entry point."""
    parser = argparse.ArgumentParser(prog="crm-scorer")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
