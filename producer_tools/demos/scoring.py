"""The scoring demo: the whole product on one machine, orchestrated (``crm-producer demo`` runs it).

Starts the local broker (or uses ``KAFKA_BOOTSTRAP_SERVERS``), creates the topics, starts ``crm-scorer run``
as a subprocess (the service is never imported by the tools), streams synthetic CRM traffic with a little
malformed input, prints a few score results as ``crm-producer tail --format table`` shows them (the full JSON
record with ``--json``) and a throughput line, and stops cleanly after ``--events`` messages are accounted for
(scored or dead-lettered) or on Ctrl-C, with a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from producer_tools.publishing.publisher import PublishSummary, event_encoders, publish_events
from producer_tools.publishing.topics import ensure_topics
from producer_tools.publishing.views import score_row, score_view
from producer_tools.servers.broker import broker_from_env
from producer_tools.world import generate
from schemas import ResultDecoder

INPUT, OUTPUT, DLQ = "crm.applications", "crm.scores", "crm.applications.dlq"
SAMPLES = 3


@dataclass
class Tally:
    scored: int = 0
    dead: int = 0
    first_at: float | None = None
    last_at: float = 0.0
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.scored + self.dead

    def rate(self) -> float:
        if self.first_at is None or self.last_at <= self.first_at:
            return 0.0
        return self.done / (self.last_at - self.first_at)


def _world(limit: int, seed: int, stop: threading.Event) -> Iterator[dict[str, Any]]:
    sent, chunk = 0, 0
    while not stop.is_set() and (limit == 0 or sent < limit):
        size = 5000 if limit == 0 else min(5000, limit - sent)
        # the world starts now: live event times on events drawn for another date would shift ages and tenures
        start = dt.datetime.now(dt.UTC)
        for event in generate(size, seed + chunk, schema_version="v2", start=start).events:
            if stop.is_set():
                return
            yield event
        sent, chunk = sent + size, chunk + 1


def _count(bootstrap: str, topic: str, tally: Tally, stop: threading.Event, dead: bool) -> None:
    """Count (and sample) what the scorer writes to ``topic`` until ``stop``; closes its consumer."""
    decoder = ResultDecoder()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"crm-demo-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while not stop.is_set():
            messages = [m for m in consumer.consume(500, timeout=0.2) if m.error() is None]
            if not messages:
                continue
            now = time.monotonic()
            tally.first_at = tally.first_at or now
            tally.last_at = now
            if dead:
                tally.dead += len(messages)
                continue
            tally.scored += len(messages)
            for message in messages[: SAMPLES - len(tally.samples)]:
                tally.samples.append(score_view(decoder.decode(message.value())))
    finally:
        consumer.close()


def _start_scorer(bootstrap: str, metrics_port: int, workers: int) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "consumer.commands.cli",
        "run",
        "--bootstrap-servers",
        bootstrap,
        "--metrics-port",
        str(metrics_port),
        "--workers",
        str(workers),
    ]
    env = os.environ | {"CRM_SCORER_CONSUMER__SESSION_TIMEOUT_MS": "6000"}
    return subprocess.Popen(args, env=env, stderr=subprocess.DEVNULL if workers == 0 else None)


def run_demo(args: argparse.Namespace) -> int:
    stop = threading.Event()
    tally = Tally()
    published: list[PublishSummary] = []
    with broker_from_env(kind=args.broker) as broker:
        bootstrap = broker.bootstrap_servers
        print(f"broker    {bootstrap}  ({broker.kind} {broker.version})", flush=True)
        ensure_topics(bootstrap, {INPUT: 6, OUTPUT: 6, DLQ: 1})
        scorer = _start_scorer(bootstrap, args.metrics_port, args.workers)
        print(f"metrics   http://127.0.0.1:{args.metrics_port}/metrics", flush=True)
        threads = [
            threading.Thread(target=_count, args=(bootstrap, OUTPUT, tally, stop, False), daemon=True),
            threading.Thread(target=_count, args=(bootstrap, DLQ, tally, stop, True), daemon=True),
            threading.Thread(
                target=lambda: published.append(_publish(bootstrap, args, stop)),
                daemon=True,
            ),
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        try:
            _watch(args, tally, scorer, started)
        except KeyboardInterrupt:
            print("\nstopping", flush=True)
        stop.set()
        code = _finish(scorer, tally, published)
        for thread in threads:
            thread.join(5)  # close every client before the broker goes away
        return code


def _publish(bootstrap: str, args: argparse.Namespace, stop: threading.Event) -> PublishSummary:
    events = _world(args.events, args.seed, stop)
    return publish_events(
        bootstrap,
        INPUT,
        events,
        encoders=event_encoders("mixed"),
        rate=args.rate,
        bad_ratio=args.bad_ratio,
        seed=args.seed,
        live_timestamps=True,
    )


def _watch(args: argparse.Namespace, tally: Tally, scorer: subprocess.Popen[bytes], started: float) -> None:
    shown, last_line = 0, 0.0
    live = sys.stdout.isatty()  # a rewritten line only where someone watches it
    while args.events == 0 or tally.done < args.events:
        time.sleep(0.5)
        if scorer.poll() is not None:
            raise SystemExit(f"the scorer exited with code {scorer.returncode}")
        while shown < len(tally.samples):
            print(_sample(tally.samples[shown], args.json), flush=True)
            shown += 1
        line = (
            f"scored {tally.scored:>9,}  dead-lettered {tally.dead:>6,}  {tally.rate():>8,.0f} events/s  "
            f"({time.monotonic() - started:5.1f} s)"
        )
        if live:
            print(f"\r{line}", end="", flush=True)
        elif time.monotonic() - last_line >= 2:
            print(line, flush=True)
            last_line = time.monotonic()
    print(flush=True)


def _sample(view: dict[str, Any], full: bool) -> str:
    """A sampled result as the tail table shows it, or with ``full`` its whole JSON view."""
    return json.dumps(view, ensure_ascii=False, indent=1) if full else score_row(view)


def _finish(scorer: subprocess.Popen[bytes], tally: Tally, published: list[PublishSummary]) -> int:
    with contextlib.suppress(ProcessLookupError):
        scorer.send_signal(signal.SIGTERM)
    try:
        code = scorer.wait(15)
    except subprocess.TimeoutExpired:
        scorer.kill()
        code = -9
    sent = published[0].line() if published else "producer still running"
    print(f"producer  {sent}")
    print(
        f"summary   consumed={tally.done} scored={tally.scored} dead-lettered={tally.dead} "
        f"events/s={tally.rate():,.0f} (scorer exit {code})",
        flush=True,
    )
    return 0 if code == 0 else 1
