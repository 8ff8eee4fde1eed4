"""Training-data capture: every joined row appended to Parquet files, one folder per date.

``<dir>/date=YYYY-MM-DD/part-<first outcome id>.parquet`` (hive-style, readable by pandas, pyarrow, DuckDB,
Spark), one file per flush. Each row is one outcome with the score it answers: ids, the model and its version,
the probability and decision as scored, the outcome, the label delay, the routing rule that made the label
exist (labels are selected: a bank's rows are only the applications that were sent to it) and, when the monitor
joins the input topic too (``topics.applications``), the application event as it was scored (``event``, the
JSON view): features are rebuilt from it by the one pipeline training and serving share, not captured twice.
The date is the outcome's ``decided_at`` (UTC). A row is written once per process that joins it: a member that
rebuilds a partition from the topics writes that partition's rows again, so readers deduplicate on ``outcome_id``.
pyarrow writes the files (pandas would only stand between the rows and pyarrow); it is imported only when
capture is on, never by the scoring path.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from consumer.monitor.join import JoinedRow
from schemas import EventDecoder
from schemas.json_view import to_json_view

_FLUSH_ROWS = 20_000
_PATIENCE = 3
_PATIENCE_S = 60.0  # and at least this long: flushes by time may come every few seconds


class Capture:
    """Buffers joined rows and writes them to ``directory`` every ``_FLUSH_ROWS`` rows, every ``flush_every_s``
    seconds (so a retrain reads rows at most that old; None: only by rows) and on ``flush``.

    ``event_of`` finds a row's application event (None: not read yet). The input topic is read beside the
    scores and outcomes, not before them, so a row whose event has not arrived waits for a later flush (up to
    ``_PATIENCE`` of them and ``_PATIENCE_S`` seconds; the last flush writes every row, ``event`` null where it
    never came).
    """

    def __init__(
        self,
        directory: Path,
        event_of: Callable[[JoinedRow], bytes | None] | None = None,
        flush_every_s: float | None = None,
    ) -> None:
        import pyarrow  # noqa: F401  (fail at start, not at the first flush, when it is not installed)

        self.directory = directory
        self._flush_every_s = flush_every_s
        self._flushed_at = time.monotonic()
        self._event_of = event_of
        self._decoder = EventDecoder()
        self._rows: list[tuple[JoinedRow, int, float]] = []  # (row, flushes it waited through, added at)
        self.written = 0

    def add(self, rows: Iterable[JoinedRow]) -> None:
        now = time.monotonic()
        self._rows += [(row, 0, now) for row in rows]
        if len(self._rows) >= _FLUSH_ROWS:
            self.flush(final=False)
        else:
            self.tick()

    def tick(self) -> None:
        """Write the buffered rows when ``flush_every_s`` has passed since the last write (the loop calls this
        while idle too, so the last rows before a pause reach the files)."""
        due = self._flush_every_s is not None and time.monotonic() - self._flushed_at >= self._flush_every_s
        if due and self._rows:
            self.flush(final=False)

    def flush(self, final: bool = True) -> None:
        """Write the buffered rows whose event is known (all of them when ``final``), one file per date."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._flushed_at = time.monotonic()
        by_date: dict[str, list[dict[str, Any]]] = {}
        waiting: list[tuple[JoinedRow, int, float]] = []
        for row, tries, added in self._rows:
            raw = self._event_of(row) if self._event_of is not None else None
            patient = tries < _PATIENCE or self._flushed_at - added < _PATIENCE_S
            if raw is None and self._event_of is not None and not final and patient:
                waiting.append((row, tries + 1, added))
                continue
            record = asdict(row)
            record["delay_s"] = row.delay_s
            record["event"] = None if raw is None else json.dumps(to_json_view(self._decoder.decode(raw)))
            date = dt.datetime.fromtimestamp(row.decided_at / 1000, dt.UTC).date().isoformat()
            by_date.setdefault(date, []).append(record)
        for date, records in sorted(by_date.items()):
            folder = self.directory / f"date={date}"
            folder.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(records, schema=_schema())
            pq.write_table(table, folder / f"part-{records[0]['outcome_id']}.parquet")
            self.written += len(records)
        self._rows = waiting


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
