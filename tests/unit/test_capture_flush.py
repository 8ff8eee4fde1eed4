"""The monitor's capture writes by time as well as by rows (so a retrain reads recent rows), and a row whose event
has not been read yet waits for it rather than being written without it."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq

from consumer.monitor.capture import Capture
from consumer.monitor.join import JoinedRow
from producer_tools.world import generate
from schemas import SingleObjectEncoder, load_catalog


def _row(event: dict, outcome: str) -> JoinedRow:
    scored_at = int(event["occurred_at"].timestamp() * 1000)
    return JoinedRow(
        outcome,
        event["application_id"],
        str(event["event_id"]),
        "bank_c",
        "bank_c-0",
        0.4,
        True,
        True,
        scored_at,
        scored_at + 60_000,
        "top2-approved.v1",
        None,
    )


def _written(directory: Path) -> dict[str, str | None]:
    rows = [r for f in sorted(directory.rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    return {str(r["outcome_id"]): r["event"] for r in rows}


def test_rows_are_written_once_flush_every_s_has_passed_and_late_events_are_waited_for(tmp_path: Path) -> None:
    events = generate(2, seed=4, schema_version="v2").events
    encode = SingleObjectEncoder(load_catalog().application_event_latest)
    known = {str(events[0]["event_id"]): encode(events[0])}  # the second event has not been read yet
    capture = Capture(tmp_path, lambda row: known.get(row.score_event_id), flush_every_s=0.05)
    capture.add([_row(events[0], "o-1"), _row(events[1], "o-2")])
    assert _written(tmp_path) == {}, "written before flush_every_s passed"
    for _ in range(5):  # more time flushes than _PATIENCE: the row without its event still waits
        time.sleep(0.06)
        capture.tick()
    written = _written(tmp_path)
    assert list(written) == ["o-1"]
    assert written["o-1"] is not None and "application_id" in written["o-1"]
    known[str(events[1]["event_id"])] = encode(events[1])
    time.sleep(0.06)
    capture.tick()
    assert set(_written(tmp_path)) == {"o-1", "o-2"}
    assert _written(tmp_path)["o-2"] is not None
