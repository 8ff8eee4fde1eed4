"""Training-data capture: every joined row appended to Parquet files, one folder per date.

``<dir>/date=YYYY-MM-DD/part-<writer>-<sequence>.parquet`` (hive-style, readable by pandas, pyarrow, DuckDB,
Spark), one file per date per flush. Each row is one outcome with the score it answers: ids, the model and its
version, the probability and decision as scored, the outcome, the label delay, the routing rule that made the
label exist (labels are selected: a bank's rows are only the applications that were sent to it) and, when the
monitor joins the input topic too (``topics.applications``), the application event as it was scored (``event``,
the JSON view): features are rebuilt from it by the one pipeline training and serving share, not captured twice.
The date is the outcome's ``decided_at`` (UTC).

Rows wait for their file in an outbox (``consumer.monitor.outbox``): the monitor's keeps them in its state store,
written with the offsets of the batch that joined them, and a flush is sealed in the store before its files are
written and released after, so a kill -9 at any point neither loses a row nor writes one twice. A member that
rebuilds a partition from the topics joins that partition's rows again and writes them again: readers keep the
first copy of each ``outcome_id`` (``models.capture_rows``), as only a reader sees every member's files.
Each file is written under a hidden name and renamed into place: a reader never sees half a file.
pyarrow writes the files (pandas would only stand between the rows and pyarrow); it is imported only when
capture is on, never by the scoring path.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from consumer.monitor.join import Changes, JoinedRow
from consumer.monitor.outbox import MemoryOutbox, Outbox, Records
from schemas import EventDecoder
from schemas.json_view import to_json_view

log = logging.getLogger(__name__)
_FLUSH_ROWS = 20_000
_PATIENCE = 3
_PATIENCE_S = 60.0  # and at least this long: flushes by time may come every few seconds


class Capture:
    """Writes the outbox's rows to ``directory`` every ``_FLUSH_ROWS`` rows, every ``flush_every_s`` seconds
    (so a retrain reads rows at most that old; None: only by rows) and on ``flush``.

    ``event_of`` finds a row's application event (None: not read yet). The input topic is read beside the
    scores and outcomes, not before them, so a row whose event has not arrived waits for a later flush (up to
    ``_PATIENCE`` of them and ``_PATIENCE_S`` seconds; the last flush writes every row, ``event`` null where it
    never came). ``outbox`` is where rows wait (memory when not given); a store's sealed writes left by a
    killed member are written when the capture opens.
    """

    def __init__(
        self,
        directory: Path,
        event_of: Callable[[JoinedRow], bytes | None] | None = None,
        flush_every_s: float | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        import pyarrow  # noqa: F401  (fail at start, not at the first flush, when it is not installed)

        self.directory = directory
        self._flush_every_s = flush_every_s
        self._flushed_at = time.monotonic()
        self._event_of = event_of
        self._decoder = EventDecoder()
        self._outbox: Outbox = outbox if outbox is not None else MemoryOutbox()
        self._waited: dict[bytes, tuple[int, float]] = {}  # outbox key -> (flushes it waited through, first seen)
        self._added = 0
        self.written = 0
        self.recovered = 0
        for sequence, records in self._outbox.sealed():
            self._write(sequence, records)
            self.recovered += len(records)
        if self.recovered:
            log.info("capture: %d rows of a write the last run sealed and did not finish, written", self.recovered)

    def stage(self, changes: Changes, rows: Iterable[tuple[int, JoinedRow]]) -> None:
        """Put ``rows`` (partition, row) in the outbox inside a batch's transaction (a store outbox; memory ignores
        it)."""
        self._outbox.stage(changes, rows)

    def add(self, rows: Iterable[JoinedRow]) -> None:
        """Rows joined (and staged, when the outbox is the store's): write them when enough have come."""
        rows = list(rows)
        self._outbox.add(rows)
        self._added += len(rows)
        if self._added >= _FLUSH_ROWS:
            self.flush(final=False)
        else:
            self.tick()

    def tick(self) -> None:
        """Write the waiting rows when ``flush_every_s`` has passed since the last write (the loop calls this
        while idle too, so the last rows before a pause reach the files)."""
        due = self._flush_every_s is not None and time.monotonic() - self._flushed_at >= self._flush_every_s
        if due:
            self.flush(final=False)

    def flush(self, final: bool = True) -> None:
        """Write the waiting rows whose event is known (all of them when ``final``), one file per date."""
        self._flushed_at = now = time.monotonic()
        self._added = 0
        keys: list[bytes] = []
        records: Records = []
        waited: dict[bytes, tuple[int, float]] = {}
        for key, row, stored in self._outbox.pending():
            tries, first = self._waited.get(key, (0, now))
            raw = stored if stored is not None or self._event_of is None else self._event_of(row)
            patient = tries < _PATIENCE or now - first < _PATIENCE_S
            if raw is None and self._event_of is not None and not final and patient:
                waited[key] = (tries + 1, first)
                continue
            keys.append(key)
            records.append((_date(row), self._record(row, raw)))
        self._waited = waited
        if keys:
            self._write(self._outbox.seal(keys, records), records)

    def _record(self, row: JoinedRow, raw: bytes | None) -> dict[str, Any]:
        record = asdict(row)
        record["delay_s"] = row.delay_s
        record["event"] = None if raw is None else json.dumps(to_json_view(self._decoder.decode(raw)))
        return record

    def _write(self, sequence: int, records: Records) -> None:
        """Write one sealed flush, a file per date, each renamed into place; then release it from the outbox."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        by_date: dict[str, list[dict[str, Any]]] = {}
        for date, record in records:
            by_date.setdefault(date, []).append(record)
        for date, rows in sorted(by_date.items()):
            folder = self.directory / f"date={date}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"part-{self._outbox.writer}-{sequence:010d}.parquet"
            hidden = folder / f".{name}.tmp"  # readers skip it (not *.parquet; pyarrow skips dot files)
            pq.write_table(pa.Table.from_pylist(rows, schema=_schema()), hidden)
            os.replace(hidden, folder / name)
            self.written += len(rows)
        self._outbox.release(sequence)


def _date(row: JoinedRow) -> str:
    return dt.datetime.fromtimestamp(row.decided_at / 1000, dt.UTC).date().isoformat()


def _schema() -> Any:
    """One schema for every file: a file whose rows all lack a value would otherwise type that column null."""
    import pyarrow as pa

    text, number, flag, millis = pa.string(), pa.float64(), pa.bool_(), pa.int64()
    columns = [
        ("outcome_id", text),
        ("application_id", text),
        ("score_event_id", text),
        ("model", text),
        ("model_version", text),
        ("probability", number),
        ("decided", flag),
        ("positive", flag),
        ("scored_at", millis),
        ("decided_at", millis),
        ("routing", text),
        ("amount", number),
        ("delay_s", number),
        ("event", text),
    ]
    return pa.schema(columns)
