"""``crm-producer broker``: run a local broker (Apache Kafka or Tansu) in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from producer_tools.servers.apache_kafka import ApacheKafka
from producer_tools.servers.broker import BOOTSTRAP_ENV, KINDS, BrokerError, TansuBroker, resolve_kind


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="run a local broker (Apache Kafka or Tansu) in the foreground",
        description="Run a local broker until Ctrl-C or SIGTERM: Apache Kafka from its Maven Central jars "
        "(needs java and mvn; --nodes 3 for a three-broker cluster) or Tansu (in memory, no Java). "
        "Its data is removed when it stops.",
    )
    parser.add_argument("--kind", choices=KINDS, default=None, help="broker kind (default: $CRM_BROKER, else tansu)")
    parser.add_argument("--nodes", type=int, choices=(1, 3), default=1, help="Apache Kafka nodes (default 1)")
    parser.add_argument("--port", type=int, default=None, help="Tansu's port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--log-file", type=Path, default=None, help="keep Tansu's log here (Apache Kafka's is printed)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start the broker, print where it listens, and block until asked to stop or the broker dies."""
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        kind = resolve_kind(args.kind, "tansu")
        broker = ApacheKafka(args.nodes) if kind == "kafka" else TansuBroker(args.port, log_path=args.log_file)
        with broker:
            print(f"broker: {broker.kind} {broker.version} {broker.settings}", flush=True)
            print(f"bootstrap: {broker.bootstrap_servers}", flush=True)
            print(f"log: {broker.log_path}", flush=True)
            print(f"export {BOOTSTRAP_ENV}={broker.bootstrap_servers}  # Ctrl-C stops the broker", flush=True)
            while not stop.wait(0.5):
                if not broker.is_running():
                    print(f"broker exited unexpectedly:\n{broker.log_tail()}", file=sys.stderr)
                    return 1
    except BrokerError as exc:
        print(f"crm-producer broker: {exc}", file=sys.stderr)
        return 1
    return 0


def _stop_on_signals(stop: threading.Event) -> None:
    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
