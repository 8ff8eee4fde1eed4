"""The capture's outbox: a row joined is in the capture exactly once, whatever step of a flush a kill -9 ends
(killed members are played by outboxes that stop at that step), and a rebuilt partition's second copies are
dropped where crm-train reads the capture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from consumer.monitor.capture import Capture
from consumer.monitor.join import JoinedRow
from consumer.monitor.outbox import Records, StoreOutbox
from consumer.monitor.store import StateStore
from models.capture_rows import first_copies, read_capture
from producer_tools.world import generate
from schemas import SingleObjectEncoder, load_catalog

EVENTS = 12


class Killed(Exception):
    """The process ends here: nothing after this step runs."""


class KilledAfterSeal(StoreOutbox):
    def seal(self, keys: list[bytes], records: Records) -> int:
        super().seal(keys, records)
        raise Killed


class KilledBeforeRelease(StoreOutbox):
    def release(self, sequence: int) -> None:
        raise Killed


@pytest.fixture(scope="module")
def world() -> tuple[list[JoinedRow], dict[str, bytes]]:
    batch = generate(EVENTS, seed=11, schema_version="v2")
    encode = SingleObjectEncoder(load_catalog().application_event_latest)
    rows = []
    for i, event in enumerate(batch.events):
        scored_at = int(event["occurred_at"].timestamp() * 1000)
        model = "lead" if i % 3 == 0 else "bank_c"
        routing = None if model == "lead" else "top2-approved.v1"
        rows.append(
            JoinedRow(
                f"o-{i:03d}",
                event["application_id"],
                str(event["event_id"]),
                model,
                f"{model}-0",
                0.3,
                True,
                bool(i % 2),
                scored_at,
                scored_at + 60_000,
                routing,
                None,
            )
        )
    return rows, {str(e["event_id"]): encode(e) for e in batch.events}


def _join(store: StateStore, capture: Capture, rows: list[JoinedRow], offset: int) -> None:
    """What a batch of the monitor writes: its rows staged with its next offset, in one transaction."""
    tx = store.transaction()
    tx.put(b"p0000/off/outcomes", b"%d" % offset)
    capture.stage(tx, [(0, row) for row in rows])
    tx.commit()
    capture.add(rows)


def _in_files(directory: Path) -> list[str]:
    """Every row in the files, duplicates included (what a plain Parquet reader sees)."""
    return sorted(r["outcome_id"] for f in directory.rglob("*.parquet") for r in pq.read_table(f).to_pylist())


def _capture(directory: Path, store: StateStore, events: dict[str, bytes], outbox: type[StoreOutbox]) -> Capture:
    return Capture(directory, lambda row: events.get(row.score_event_id), outbox=outbox(store))


@pytest.mark.parametrize("killed", [KilledAfterSeal, KilledBeforeRelease], ids=["after_seal", "before_release"])
def test_a_flush_killed_at_any_step_is_completed_once_when_the_member_opens_again(
    tmp_path: Path, world: tuple[list[JoinedRow], dict[str, bytes]], killed: type[StoreOutbox]
) -> None:
    rows, events = world
    capture_dir = tmp_path / "capture"
    with StateStore(tmp_path / "store") as store:
        capture = _capture(capture_dir, store, events, StoreOutbox)
        _join(store, capture, rows[:4], 4)
        capture.flush(final=False)
        capture = _capture(capture_dir, store, events, killed)
        _join(store, capture, rows[4:8], 8)
        with pytest.raises(Killed):
            capture.flush(final=False)
        _join(store, capture, rows[8:10], 10)  # joined after the failed flush: still in the outbox
    with StateStore(tmp_path / "store") as store:  # the member starts again
        capture = _capture(capture_dir, store, events, StoreOutbox)
        assert capture.recovered == 4
        _join(store, capture, rows[10:], EVENTS)
        capture.flush()
    assert _in_files(capture_dir) == sorted(r.outcome_id for r in rows)
    assert not list(capture_dir.rglob(".*.tmp"))


def test_rows_joined_but_never_flushed_survive_a_kill_with_the_offsets_that_made_them(
    tmp_path: Path, world: tuple[list[JoinedRow], dict[str, bytes]]
) -> None:
    rows, events = world
    with StateStore(tmp_path / "store") as store:
        _join(store, _capture(tmp_path / "capture", store, events, StoreOutbox), rows, EVENTS)  # then kill -9
    with StateStore(tmp_path / "store") as store:
        assert store.get(b"p0000/off/outcomes") == b"%d" % EVENTS  # the member resumes past these rows...
        _capture(tmp_path / "capture", store, events, StoreOutbox).flush()
    assert _in_files(tmp_path / "capture") == sorted(r.outcome_id for r in rows)  # ...and they are not lost


def test_a_rebuilt_partition_writes_its_rows_again_and_the_reader_keeps_one_copy_with_its_event(
    tmp_path: Path, world: tuple[list[JoinedRow], dict[str, bytes]]
) -> None:
    rows, events = world
    late = {k: v for k, v in events.items() if k != rows[1].score_event_id}  # one event not read yet: no event
    for name, known in (("first", late), ("rebuilt", events)):
        with StateStore(tmp_path / name) as store:
            capture = _capture(tmp_path / "capture", store, known, StoreOutbox)
            _join(store, capture, rows, EVENTS)
            capture.flush()
    assert len(_in_files(tmp_path / "capture")) == 2 * EVENTS
    read = read_capture(tmp_path / "capture")
    assert (read.summary.rows, read.summary.duplicates, read.summary.without_event) == (2 * EVENTS, EVENTS, 0)
    assert sorted(read.score_event_id.tolist()) == sorted(r.score_event_id for r in rows)


def test_the_first_copy_with_its_event_is_kept_in_file_order() -> None:
    ids = ["a", "b", "a", "c", "b", "a"]
    events = [None, "e", "e1", None, "e2", "e3"]
    assert first_copies(ids, events).tolist() == [1, 2, 3]
    assert first_copies([], []).tolist() == []


def test_an_event_read_before_its_partitions_first_score_waits_for_the_partitions_clock_to_expire(
    tmp_path: Path,
) -> None:
    from consumer.monitor.join import PartitionJoin

    day = 86_400_000
    march, december = 1_772_400_000_000, 1_796_500_000_000  # a back-dated world's events, scored today

    def batch(store: StateStore, change: Callable[[PartitionJoin], object]) -> None:
        tx = store.transaction()
        join = PartitionJoin(tx, b"p0000/")
        change(join)
        join.expire(store, 7 * day)
        tx.commit()

    def score(at: int, event_id: str) -> Callable[[PartitionJoin], object]:
        return lambda join: join.add_score(
            "app", {"event_id": event_id, "scored_at": at, "models": {}, "answered": True}
        )

    with StateStore(tmp_path / "store") as store:
        batch(store, lambda join: join.add_event("e-1", march, b"event"))
        for at, event_id in ((december, "e-1"), (december + day, "e-2")):
            batch(store, score(at, event_id))
        assert store.get(b"p0000/evt/e-1") == b"event", "expired at its partition's first score"
        for at, event_id in ((december + 8 * day, "e-3"), (december + 9 * day, "e-4")):
            batch(store, score(at, event_id))
        assert store.get(b"p0000/evt/e-1") is None, "kept past its TTL"
