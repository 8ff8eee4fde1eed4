"""Load on ``crm-scorer gateway`` with wrk (Debian's package), with the scorer running: nothing lost, and how fast.

1. uploads: wrk posts distinct pre-scoring forms (scripts/gateway_upload.lua) at the offered rate
   ``connections / (delay + latency)``; every upload answered 200 is an acknowledged one. Then every
   acknowledged task is asked for until ``check_task`` is true and ``get_result`` answers (a result or a
   dead-letter reason): a task that never answers is lost. Upload-to-result is read from the scores topic:
   the result message's timestamp minus the event's time (the gateway stamps the event just before publishing
   it), and from the gateway's own histogram (acknowledgement to the result in its view).
2. predict: wrk posts the lead-scoring example (a different time on site each request) as fast as answered.

Starts a local Apache Kafka (or uses ``--bootstrap-servers``), the scorer and the gateway. Needs wrk:
``apt-get install -y wrk``. Usage: ``.venv/bin/python scripts/gateway_load.py [--duration 30 ...]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from producer_tools.publishing.topics import ensure_topics
from producer_tools.servers.apache_kafka import ApacheKafka
from schemas import ResultDecoder, load_catalog

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "consumer.commands.cli"]


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        print("gateway_load: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        bootstrap = args.bootstrap_servers or stack.enter_context(ApacheKafka()).bootstrap_servers
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        run = uuid.uuid4().hex[:8]
        topics = {"in": f"gw-load-in-{run}", "out": f"gw-load-out-{run}", "dlq": f"gw-load-dlq-{run}"}
        ensure_topics(bootstrap, {topics["in"]: 6, topics["out"]: 6, topics["dlq"]: 1})
        lanes = [
            "--bootstrap-servers",
            bootstrap,
            "--input-topic",
            topics["in"],
            "--output-topic",
            topics["out"],
            "--dlq-topic",
            topics["dlq"],
        ]
        stack.enter_context(
            process([*CLI, "run", *lanes, "--group-id", f"gw-load-{run}", "--metrics-port", "0"], work / "scorer.log")
        )
        url, pid = stack.enter_context(
            gateway([*CLI, "gateway", *lanes, "--port", "0", "--store-path", str(work / "store")], work / "gateway.log")
        )
        print(
            f"broker {bootstrap}; gateway {url}; offered upload rate ~{args.connections * 1000 / args.delay_ms:.0f}/s"
        )
        uploads(args, url, pid, work, bootstrap, topics["out"])
        predicts(args, url, pid)
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--bootstrap-servers", help="an existing broker (default: start a local Apache Kafka)")
    add("--duration", type=int, default=30, help="seconds of each wrk run")
    add("--connections", type=int, default=10, help="upload connections")
    add("--delay-ms", type=int, default=30, help="each upload connection's pause after every answer")
    add("--predict-connections", type=int, default=16)
    add("--answer-timeout", type=float, default=180.0, help="longest wait for every acknowledged task's answer")
    return parser.parse_args()


@contextlib.contextmanager
def process(command: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield child
        finally:
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()


@contextlib.contextmanager
def gateway(command: list[str], log: Path) -> Iterator[tuple[str, int]]:
    with process(command, log) as child:
        deadline = time.monotonic() + 90
        while not (found := re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))):
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the gateway did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        url = found.group(1)
        while httpx.get(f"{url}/readyz").status_code != 200:
            time.sleep(0.2)
        yield url, child.pid


def wrk(script: str, url: str, connections: int, duration: int, env: dict[str, str] | None = None) -> str:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(HERE / script), url]
    print("$", " ".join(command[:-3]), f"scripts/{script}", url)
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | (env or {}), check=True)
    print(done.stdout)
    return done.stdout


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_done(report: str) -> int:
    found = re.search(r"(\d+) requests in", report)
    return int(found.group(1)) if found else 0


def uploads(args: argparse.Namespace, url: str, pid: int, work: Path, bootstrap: str, scores: str) -> None:
    acks = work / "acks"
    used = cpu_seconds(pid)
    wrk(
        "gateway_upload.lua",
        url,
        args.connections,
        args.duration,
        {"GATEWAY_ACKS": str(acks), "GATEWAY_DELAY_MS": str(args.delay_ms)},
    )
    answers = [line.split() for path in work.glob("acks.*") for line in path.read_text().splitlines()]
    accepted = {task for status, task in answers if status == "200"}
    print(f"gateway CPU per upload (its threads included): {(cpu_seconds(pid) - used) / len(answers) * 1000:.2f} ms")
    statuses = sorted({status for status, _ in answers})
    print(f"uploads answered: {len(answers)} (statuses {statuses}); acknowledged tasks: {len(accepted)}")
    started = time.monotonic()
    lost = unanswered(url, accepted, args.answer_timeout)
    print(
        f"every acknowledged task answered by get_result: {not lost} ({len(accepted) - len(lost)} of "
        f"{len(accepted)}; asking every one of them took {time.monotonic() - started:.1f} s)"
    )
    waits = upload_to_result_ms(bootstrap, scores, accepted)
    print(
        f"upload-to-result (result timestamp - event time), {len(waits)} results: "
        f"p50 {np.percentile(waits, 50):.0f} ms, p99 {np.percentile(waits, 99):.0f} ms"
    )
    print("gateway histogram (acknowledgement to the result in its view):", histogram_quantiles(url))


def unanswered(url: str, tasks: set[str], timeout: float) -> set[str]:
    """The tasks whose ``get_result`` has no answer (result or dead-letter reason) within ``timeout``."""
    waiting = set(tasks)
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=30) as client:
        while waiting and time.monotonic() < deadline:
            for task in sorted(waiting):  # get_result: 200 (a result), 422 (a dead letter), 409 (not yet)
                if client.get("/get_result", params={"task_id": task}).status_code in (200, 422):
                    waiting.discard(task)
            if waiting:
                time.sleep(1)
    return waiting


def upload_to_result_ms(bootstrap: str, topic: str, tasks: set[str]) -> list[float]:
    decode = ResultDecoder(load_catalog()).decode
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"gw-load-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    waits, idle = [], time.monotonic() + 5
    while time.monotonic() < idle:
        for message in consumer.consume(1000, timeout=0.5):
            if message.error():
                continue
            idle = time.monotonic() + 3
            result = decode(message.value())
            if result["application_hash"] in tasks:
                event_ms = result["event_time"].timestamp() * 1000
                waits.append(message.timestamp()[1] - event_ms)
    consumer.close()
    return waits


def histogram_quantiles(url: str) -> str:
    """p50 and p99 of the gateway's upload-to-answer histogram (linear within a bucket, as Prometheus does)."""
    text = httpx.get(f"{url}/metrics").text
    pattern = r'crm_gateway_upload_to_answer_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)'
    buckets = [(float(le), float(count)) for le, count in re.findall(pattern, text)]
    total = buckets[-1][1]
    out = []
    for q in (0.5, 0.99):
        rank, lower, below = q * total, 0.0, 0.0
        for upper, count in buckets:
            if count >= rank:
                share = (rank - below) / (count - below) if count > below else 1.0
                out.append(f"p{int(q * 100)} ~{(lower + (upper - lower) * share) * 1000:.0f} ms")
                break
            lower, below = upper, count
    return f"{', '.join(out)} over {total:.0f} answers"


def predicts(args: argparse.Namespace, url: str, pid: int) -> None:
    used = cpu_seconds(pid)
    answered = requests_done(wrk("gateway_predict.lua", url, args.predict_connections, args.duration))
    print(f"gateway CPU per predict (its threads included): {(cpu_seconds(pid) - used) / answered * 1000:.2f} ms")


if __name__ == "__main__":
    sys.exit(main())
