"""Training-data capture: every joined row appended to Parquet files, one folder per date.

``<dir>/date=YYYY-MM-DD/part-<first outcome id>.parquet`` (hive-style, readable by pandas, pyarrow, DuckDB,
Spark), one file per flush. Each row is one outcome with the score it answers: ids, the model and its version,
the probability and decision as scored, the outcome, the label delay, and the routing rule that made the label
exist (labels are selected: a bank's rows are only the applications that were sent to it). The date is the
outcome's ``decided_at`` (UTC). A row is written once per process that joins it: a member that rebuilds a
partition from the topics writes that partition's rows again, so readers deduplicate on ``outcome_id``.
pyarrow writes the files (pandas would only stand between the rows and pyarrow); it is imported only when
capture is on, never by the scoring path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from consumer.monitor.join import JoinedRow

_FLUSH_ROWS = 20_000


class Capture:
    """Buffers joined rows and writes them to ``directory`` every ``_FLUSH_ROWS`` rows and on ``flush``."""

    def __init__(self, directory: Path) -> None:
        import pyarrow  # noqa: F401  (fail at start, not at the first flush, when it is not installed)

        self.directory = directory
        self._rows: list[dict[str, Any]] = []
        self.written = 0

    def add(self, rows: Iterable[JoinedRow]) -> None:
        for row in rows:
            record = asdict(row)
            record["delay_s"] = row.delay_s
            record["date"] = dt.datetime.fromtimestamp(row.decided_at / 1000, dt.UTC).date().isoformat()
            self._rows.append(record)
        if len(self._rows) >= _FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows, one file per date."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        by_date: dict[str, list[dict[str, Any]]] = {}
        for record in self._rows:
            by_date.setdefault(record.pop("date"), []).append(record)
        for date, records in sorted(by_date.items()):
            folder = self.directory / f"date={date}"
            folder.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(records)
            pq.write_table(table, folder / f"part-{records[0]['outcome_id']}.parquet")
            self.written += len(records)
        self._rows.clear()
