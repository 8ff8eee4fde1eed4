"""``crm-producer broker``: run the local broker in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from producer_tools.broker import BOOTSTRAP_ENV, BrokerError, LocalBroker


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "broker",
        help="run a local Kafka-protocol broker (Tansu, in memory) in the foreground",
        description="Run a local Kafka-protocol broker (Tansu, memory storage) until Ctrl-C or SIGTERM. "
        "Its data is lost when it stops.",
    )
    parser.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--log-file", type=Path, default=None, help="keep the broker's log here")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start the broker, print where it listens, and block until asked to stop or the broker dies."""
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        with LocalBroker(args.port, log_path=args.log_file) as broker:
            print(f"bootstrap: {broker.bootstrap_servers}", flush=True)
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
