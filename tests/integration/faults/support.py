"""What the fault scenarios share: feeding events, reading outcomes back, the conservation check, the table.

The conservation check is the point of every scenario: each produced message must end as a score result (found
by its ``event_id``) or a dead letter (found by the source partition and offset in its headers). Lost messages
fail the scenario; duplicates (at-least-once re-deliveries) are counted and bounded by each scenario.
"""

from __future__ import annotations

import collections
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from producer_tools.publishing.topics import scan_topic
from producer_tools.world import generate
from schemas.dead_letter import DeadLetterInfo
from tests.integration.faults.processes import listening_port
from tests.integration.harness import ENCODE_V2, Lanes, ScorerProcess

SINGLE_OBJECT_HEADER = 10
CONFLUENT_HEADER = 5
INPUT_PARTITIONS = 6
_COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


@dataclass(frozen=True)
class Row:
    """One line of the fault table."""

    scenario: str
    produced: int
    scored: int
    dead_lettered: int
    duplicates: int
    lost: int
    seconds: float
    note: str = ""
    guarantee: str = "at_least_once"
    broker: str = field(default_factory=lambda: BROKER_LABEL)


BROKER_LABEL = "Apache Kafka"  # set by the fault suite's conftest from the session's broker
TABLE: list[Row] = []  # filled by the scenarios, printed by the conftest's terminal summary


def format_table(rows: Sequence[Row]) -> list[str]:
    """The rows as a Markdown table."""
    lines = [
        "| scenario | broker | guarantee | produced | scored | dead-lettered | duplicates | lost | seconds | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.broker} | {r.guarantee} | {r.produced:,} | {r.scored:,} | {r.dead_lettered:,} | "
            f"{r.duplicates:,} | "
            f"{r.lost:,} | {r.seconds:.0f} | {r.note} |"
        )
    return lines


# --- messages and where they landed -----------------------------------------------------------------------------


def read_event_id(value: bytes) -> str:
    """The ``event_id`` of a framed event or score result (both schemas put it first), single-object or
    Confluent-framed (``0x00`` + a 4-byte registry id).

    Reading the first string by hand is ~50x faster than a full Avro decode, which matters at 1,000,000 results.
    """
    shift, raw, pos = 0, 0, CONFLUENT_HEADER if value[0] == 0 else SINGLE_OBJECT_HEADER
    while True:
        byte = value[pos]
        raw |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            break
        shift += 7
    length = (raw >> 1) ^ -(raw & 1)
    return value[pos : pos + length].decode("utf-8")


def pairs(messages: Iterable[tuple[bytes, bytes, str]]) -> list[tuple[bytes | None, bytes | None]]:
    return [(key, value) for key, value, _ in messages]


def valid_messages(count: int, seed: int) -> list[tuple[bytes, bytes, str]]:
    """(key, value, event_id) of ``count`` distinct world events, single-object framed."""
    out = []
    for event in generate(count, seed=seed).events:
        out.append((event["application_id"].encode(), ENCODE_V2(event), str(event["event_id"])))
    return out


def stream_messages(total: int, seed: int, chunk: int = 50_000) -> Iterator[tuple[bytes, bytes, str]]:
    """Like ``valid_messages`` but generated lazily in chunks, so a million never sit in memory at once."""
    done = 0
    while done < total:
        n = min(chunk, total - done)
        yield from valid_messages(n, seed * 1000 + done // chunk)
        done += n


def scan(bootstrap: str, topic: str, handle: Callable[[Message], None], idle: float = 1.5) -> None:
    """Call ``handle`` on every message of ``topic`` from the beginning, until every partition is at its end."""
    scan_topic(bootstrap, topic, handle, timeout=600.0, idle=idle)


@dataclass
class Outcomes:
    """What the scorer wrote: score results per event_id, dead letters per source (partition, offset)."""

    scored: collections.Counter[str] = field(default_factory=collections.Counter)
    dead: collections.Counter[tuple[int, int]] = field(default_factory=collections.Counter)
    reasons: dict[tuple[int, int], DeadLetterInfo] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return sum(self.scored.values()) - len(self.scored) + sum(self.dead.values()) - len(self.dead)


SETTLE_S = 180.0  # the transaction timeout the scorer uses by default (130 s), and a margin


def open_transactions(bootstrap: str, topic: str) -> list[int]:
    """Partitions of ``topic`` whose last stable offset (what a ``read_committed`` reader can reach) is behind the
    high watermark: an open transaction holds them, say that of a worker its watchdog ended, until the
    coordinator or a producer with its transactional id aborts it."""
    ends = {}
    for isolation in ("read_committed", "read_uncommitted"):
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "settle-probe", "isolation.level": isolation})
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ends[isolation] = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
            }
        finally:
            consumer.close()
    return sorted(p for p, end in ends["read_uncommitted"].items() if ends["read_committed"].get(p, -1) < end)


def read_outcomes(lanes: Lanes) -> Outcomes:
    """Every result and dead letter, read ``read_committed`` once no transaction holds the topics back (a result a
    reader cannot reach yet would read as lost)."""
    for topic in (lanes.output, lanes.dlq):
        settled = partial(open_transactions, lanes.bootstrap, topic)
        wait_until(lambda settled=settled: not settled(), SETTLE_S, f"no open transaction on {topic}")
    outcomes = Outcomes()

    def result(message: Message) -> None:
        outcomes.scored[read_event_id(message.value() or b"")] += 1

    def dead_letter(message: Message) -> None:
        info = DeadLetterInfo.from_headers(message.headers())
        assert info.topic == lanes.input, f"a dead letter names source topic {info.topic!r}"
        outcomes.dead[(info.partition, info.offset)] += 1
        outcomes.reasons[(info.partition, info.offset)] = info

    scan(lanes.bootstrap, lanes.output, result)
    scan(lanes.bootstrap, lanes.dlq, dead_letter)
    return outcomes


@dataclass(frozen=True)
class Expected:
    """What must come out: these event_ids scored, and a dead letter with this reason at these input positions."""

    scored: frozenset[str]
    dead: dict[tuple[int, int], str] = field(default_factory=dict)

    @property
    def produced(self) -> int:
        return len(self.scored) + len(self.dead)


def record(row: Row) -> Row:
    """Add a row to the table (scenarios whose check is not conservation, e.g. a refusal at start)."""
    TABLE.append(row)
    return row


def conservation(
    scenario: str,
    expected: Expected,
    outcomes: Outcomes,
    seconds: float,
    note: str = "",
    guarantee: str = "at_least_once",
) -> Row:
    """Compare, record the row in the table, and fail on any loss, stray output or wrong dead-letter reason.

    Under ``exactly_once`` the read-back (always ``read_committed``) must also hold no duplicate."""
    missing_scores = expected.scored - outcomes.scored.keys()
    missing_dead = expected.dead.keys() - outcomes.dead.keys()
    row = Row(
        scenario,
        produced=expected.produced,
        scored=len(expected.scored & outcomes.scored.keys()),
        dead_lettered=len(expected.dead.keys() & outcomes.dead.keys()),
        duplicates=outcomes.duplicates,
        lost=len(missing_scores) + len(missing_dead),
        seconds=seconds,
        note=note,
        guarantee=guarantee,
    )
    TABLE.append(row)
    print(
        f"\n[{scenario}, {guarantee}] produced={row.produced} scored={row.scored} dead-lettered={row.dead_lettered} "
        f"duplicates={row.duplicates} lost={row.lost} in {seconds:.0f} s {note}"
    )
    if guarantee == "exactly_once":
        assert row.duplicates == 0, f"{scenario}: {row.duplicates} duplicates visible to a read_committed reader"
    assert row.lost == 0, (
        f"{scenario}: lost {sorted(missing_scores)[:5]} and dead letters at {sorted(missing_dead)[:5]}"
    )
    _assert_nothing_stray(scenario, expected, outcomes)
    return row


def _assert_nothing_stray(scenario: str, expected: Expected, outcomes: Outcomes) -> None:
    """No result or dead letter that was not expected, and every dead letter with its expected reason."""
    stray = outcomes.scored.keys() - expected.scored
    assert not stray, f"{scenario}: results for events nobody produced (or that should be dead letters): {stray}"
    stray_dead = outcomes.dead.keys() - expected.dead.keys()
    assert not stray_dead, f"{scenario}: dead letters for positions that should be scored: {sorted(stray_dead)[:5]}"
    wrong = {
        pos: (want, outcomes.reasons[pos].reason)
        for pos, want in expected.dead.items()
        if outcomes.reasons[pos].reason != want
    }
    assert not wrong, f"{scenario}: dead letters with the wrong reason (expected, got): {wrong}"


def telemetry_url(scorer: ScorerProcess, timeout: float = 30.0) -> str:
    """``http://127.0.0.1:port`` of the scorer's metrics and health endpoints, once the scorer listens.

    The harness binds port 0 (no race for a free port); the port is read from the process's listening socket.
    """
    assert scorer.process is not None
    pid = scorer.process.pid
    found: list[int] = []

    def listening() -> bool:
        port = listening_port(pid)
        if port is not None:
            found.append(port)
        return port is not None

    wait_until(listening, timeout, "the telemetry endpoint listening", scorer)
    return f"http://127.0.0.1:{found[-1]}"


def http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """(status, body) of a GET; a refused or timed-out connection is status 0."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return 0, ""


def committed_total(lanes: Lanes, partitions: int = INPUT_PARTITIONS) -> int:
    """Sum of the group's committed input offsets (what a replacement member would start from)."""
    # Never subscribes, so it never joins (or disturbs) the group it reads.
    consumer = Consumer({"bootstrap.servers": lanes.bootstrap, "group.id": lanes.group, "enable.auto.commit": False})
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                committed = consumer.committed([TopicPartition(lanes.input, p) for p in range(partitions)], timeout=10)
                break
            except KafkaException as exc:
                # Apache Kafka answers NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS while a coordinator moves
                # (after a broker pause or restart): retriable, as a real client would treat it.
                moving = exc.args[0].retriable() or exc.args[0].code() in _COORDINATOR_MOVING
                if not moving or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()
    return sum(tp.offset for tp in committed if tp.offset >= 0)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, scorer: ScorerProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if scorer is not None:
            assert scorer.process and scorer.process.poll() is None, f"scorer exited:\n{scorer.log[-3000:]}"
        assert time.monotonic() < deadline, f"{what} not within {timeout} s" + (
            f"; scorer log:\n{scorer.log[-3000:]}" if scorer else ""
        )
        time.sleep(0.2)


def count_topic(bootstrap: str, topic: str) -> int:
    """Messages in ``topic``, counted by reading it (quick: stops half a second after the last one)."""
    seen = 0

    def tally(_: Message) -> None:
        nonlocal seen
        seen += 1

    scan(bootstrap, topic, tally, idle=0.5)
    return seen
