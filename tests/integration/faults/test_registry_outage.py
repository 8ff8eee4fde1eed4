"""Schema Registry outages on the Confluent framing path (Apicurio Registry, Apache Kafka).

Three scenarios: the registry down when the scorer starts; the registry killed for 30 s mid-stream while events
of a writer schema the scorer has not seen yet arrive; the registry answering every request 2 s late. Each ends
with conservation (every event scored, nothing dead-lettered for the outage, nothing lost) and the scorer's
single worker never restarted. While a worker waits on the registry it is alive (``/healthz``) and not ready
(``/readyz`` names ``schema_registry``); ids it already knows keep scoring.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer_tools.servers.apicurio import ApicurioRegistry
from producer_tools.world import generate
from schemas import ConfluentEncoder, load_catalog
from schemas.registry import RegistrySchemaSource, value_subject
from tests.integration.faults.producing import Feeder, produce_tracked
from tests.integration.faults.support import (
    Expected,
    committed_total,
    conservation,
    count_topic,
    http_get,
    read_outcomes,
    telemetry_url,
    wait_until,
)
from tests.integration.harness import Lanes, ScorerProcess

pytestmark = pytest.mark.faults
CATALOG = load_catalog()
V1, V2 = CATALOG.get("application_event.v1"), CATALOG.get("application_event.v2")
OUTAGE_S = 30.0
NEW_WRITER_KEY = b"new-writer"  # every event of the schema the scorer has not seen yet goes to one partition


def framed(
    source: RegistrySchemaSource, lanes: Lanes, version: str, count: int, seed: int, key: bytes | None = None
) -> list[tuple[bytes, bytes, str]]:
    """(key, value, event_id) of ``count`` events, Confluent-framed with the id the registry gave ``version``."""
    schema = V1 if version == "v1" else V2
    encode = ConfluentEncoder(source.register_schema(value_subject(lanes.input), schema.schema_str), schema)
    return [
        (key or e["application_id"].encode(), encode(e), str(e["event_id"])) for e in generate(count, seed=seed).events
    ]


def scorer_args(url: str) -> tuple[str, ...]:
    return ("--schema-registry-url", url)


def no_restart(scorer: ScorerProcess) -> None:
    assert "starting a replacement" not in scorer.log and "Traceback" not in scorer.log, scorer.log[-3000:]
    assert scorer.process is not None and scorer.process.poll() is None, scorer.log[-3000:]


def held_seconds(log: str) -> float:
    """How long scoring of the held partitions paused, as the scorer logged it when it resumed."""
    found = re.findall(r"schema registry answered again after ([0-9.]+) s", log)
    return max(map(float, found)) if found else 0.0


def test_registry_down_when_the_scorer_starts_it_waits_alive_and_not_ready_then_scores_everything(
    lanes: Lanes, apicurio: ApicurioRegistry, tmp_path: Path
) -> None:
    started = time.monotonic()
    source = RegistrySchemaSource.from_url(apicurio.url)
    messages = framed(source, lanes, "v2", 5000, seed=501) + framed(source, lanes, "v1", 5000, seed=502)
    source.close()
    produce_tracked(lanes.bootstrap, lanes.input, [(k, v) for k, v, _ in messages])
    apicurio.kill()
    with ScorerProcess(lanes, tmp_path, *scorer_args(apicurio.url)) as scorer:
        url = telemetry_url(scorer)
        scorer.wait_for_log("cannot register the result schema yet", 60)
        wait_until(lambda: http_get(url + "/healthz")[0] == 200, 30, "/healthz 200 while waiting", scorer)
        status, body = http_get(url + "/readyz")
        assert status == 503 and "schema_registry" in body, body
        time.sleep(8)
        no_restart(scorer)
        assert count_topic(lanes.bootstrap, lanes.output) == 0
        down_for = time.monotonic() - started
        apicurio.start()
        wait_until(lambda: committed_total(lanes) >= len(messages), 120, "every offset committed", scorer)
        wait_until(lambda: http_get(url + "/readyz")[0] == 200, 30, "/readyz 200 after the registry", scorer)
        no_restart(scorer)
        scorer.stop()
    conservation(
        "12a. schema registry down at start",
        Expected(frozenset(m[2] for m in messages)),
        read_outcomes(lanes),
        time.monotonic() - started,
        f"waited {down_for:.0f} s alive and not ready; worker never restarted",
        "at_least_once",
    )


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
@pytest.mark.matrix  # make test-faults: 60 s each; the gate's holds: tests/unit/loop/test_registry_gate.py
def test_registry_killed_30_s_while_a_new_writer_schema_arrives_holds_only_its_partition(
    lanes: Lanes, apicurio: ApicurioRegistry, tmp_path: Path, guarantee: str
) -> None:
    started = time.monotonic()
    source = RegistrySchemaSource.from_url(apicurio.url)
    known = framed(source, lanes, "v1", 30_000, seed=511)
    new = framed(source, lanes, "v2", 3000, seed=512, key=NEW_WRITER_KEY)  # registered now, never seen yet
    source.close()
    with (
        ScorerProcess(lanes, tmp_path, "--guarantee", guarantee, *scorer_args(apicurio.url)) as scorer,
        Feeder(lanes.bootstrap, lanes.input, [(k, v) for k, v, _ in known], rate=1000) as feeder,
    ):
        url = telemetry_url(scorer)
        wait_until(lambda: count_topic(lanes.bootstrap, lanes.output) > 3000, 60, "3,000 results", scorer)
        apicurio.kill()
        produce_tracked(lanes.bootstrap, lanes.input, [(k, v) for k, v, _ in new])
        scorer.wait_for_log("schema registry unavailable", 30)
        before = count_topic(lanes.bootstrap, lanes.output)
        readiness = []
        for _ in range(int(OUTAGE_S)):
            readiness.append(http_get(url + "/readyz")[0])
            time.sleep(1.0)
        during = count_topic(lanes.bootstrap, lanes.output) - before
        no_restart(scorer)
        apicurio.start()
        feeder.join()
        total = len(known) + len(new)
        wait_until(lambda: committed_total(lanes) >= total, 180, "every offset committed", scorer)
        no_restart(scorer)
        scorer.stop()
    assert during > 5000, f"the partitions without the new writer kept scoring: only {during} results in the outage"
    assert 503 in readiness, f"/readyz stayed ready while a partition waited: {readiness}"
    paused = held_seconds(scorer.log)
    conservation(
        "12b. schema registry killed 30 s, new writer id arriving",
        Expected(frozenset(m[2] for m in known + new)),
        read_outcomes(lanes),
        time.monotonic() - started,
        f"1 partition held {paused:.0f} s; {during:,} results from the others meanwhile",
        guarantee,
    )


class SlowProxy:
    """A TCP relay in front of the registry that holds each chunk a client sends for ``delay`` seconds (each
    HTTP request of confluent-kafka's client is one chunk: every request answers ``delay`` late)."""

    def __init__(self, port: int, delay: float) -> None:
        self._target, self._delay = port, delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.requests = 0
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, slow: bool) -> None:
        with source, target:
            while chunk := _recv(source):
                if slow:
                    self.requests += 1
                    time.sleep(self._delay)
                try:
                    target.sendall(chunk)
                except OSError:
                    return

    def close(self) -> None:
        self._closing = True
        self._listener.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


@pytest.fixture
def slow_registry(apicurio: ApicurioRegistry) -> Iterator[SlowProxy]:
    proxy = SlowProxy(apicurio.port, delay=2.0)
    yield proxy
    proxy.close()


def test_a_registry_answering_2_s_late_slows_only_the_first_message_of_each_new_id(
    lanes: Lanes, apicurio: ApicurioRegistry, slow_registry: SlowProxy, tmp_path: Path
) -> None:
    started = time.monotonic()
    source = RegistrySchemaSource.from_url(apicurio.url)
    messages = framed(source, lanes, "v1", 10_000, seed=521) + framed(source, lanes, "v2", 10_000, seed=522)
    source.close()
    produce_tracked(lanes.bootstrap, lanes.input, [(k, v) for k, v, _ in messages])
    slow_url = apicurio.url.replace(f":{apicurio.port}", f":{slow_registry.port}")
    with ScorerProcess(lanes, tmp_path, *scorer_args(slow_url)) as scorer:
        wait_until(lambda: committed_total(lanes) >= len(messages), 120, "every offset committed", scorer)
        no_restart(scorer)
        scorer.stop()
    requests = slow_registry.requests
    assert 3 <= requests <= 6, f"{requests} registry requests: the result schema and one per writer id expected"
    conservation(
        "12c. schema registry answering 2 s late",
        Expected(frozenset(m[2] for m in messages)),
        read_outcomes(lanes),
        time.monotonic() - started,
        f"{requests} requests, 2 s each; ids cached after the first",
        "at_least_once",
    )
