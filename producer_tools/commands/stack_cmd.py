"""``crm-producer stack`` (``make stack``): the docker-compose topology as local processes until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from producer_tools.demos.stack import TOPICS, Stack, StackPorts
from producer_tools.servers.process import BrokerError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="run the whole stack (Kafka, registry, two scorers, gateway, producer, outcomes, monitor, Prometheus) "
        "without Docker",
        description="Apache Kafka, Apicurio Registry, two scorer replicas in one group (Confluent framing), the "
        "synthetic CRM at a steady rate with about 1%% malformed messages, the HTTP gateway, the world's outcomes and "
        "crm-scorer monitor joining them, and Prometheus with the alert rules, as local processes; Ctrl-C stops "
        "them all. Needs java 17+ (Kafka), java 21+ (the registry) "
        "and mvn.",
    )
    parser.add_argument("--rate", type=float, default=200.0, help="events per second (default 200)")
    parser.add_argument("--bad-ratio", type=float, default=0.01, help="share of malformed messages (default 0.01)")
    parser.add_argument("--folder", type=Path, default=None, help="logs and data here (default: a temporary one)")
    parser.add_argument("--no-prometheus", action="store_true", help="leave Prometheus out")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(
        "starting Apache Kafka, Apicurio Registry, two scorers, the gateway, the producer and Prometheus...", flush=True
    )
    try:
        with Stack(
            args.folder, ports=StackPorts(), rate=args.rate, bad_ratio=args.bad_ratio, prometheus=not args.no_prometheus
        ) as stack:
            width = max(map(len, stack.urls()))
            for name, url in stack.urls().items():
                print(f"  {name:<{width}}  {url}", flush=True)
            print(f"  {'topics':<{width}}  {TOPICS['input']} -> {TOPICS['output']}, dead letters {TOPICS['dlq']}")
            print(
                f"watch the scores: crm-producer tail --bootstrap-servers {stack.kafka.bootstrap_servers} "
                f"--schema-registry-url {stack.registry.url}",
                flush=True,
            )
            print("Ctrl-C stops everything", flush=True)
            while not stop.wait(1.0):
                if problems := stack.problems():
                    print("\n".join(problems), file=sys.stderr)
                    return 1
            print("stopping...", flush=True)
    except BrokerError as exc:
        print(f"crm-producer stack: {exc}", file=sys.stderr)
        return 1
    return 0
