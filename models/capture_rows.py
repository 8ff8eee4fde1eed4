"""Reading the monitor's training capture: Parquet rows of joined outcomes, deduplicated, with their events.

The capture (``consumer.monitor.capture``) is a hive-style folder, ``<dir>/date=YYYY-MM-DD/*.parquet``: one row
per joined outcome with the model, the outcome, the routing rule that made the label exist and the application
event as it was scored (``event``, the JSON view). A kill -9 of the monitor neither loses nor doubles a row, but
a member that rebuilds a partition from the topics writes its rows again, in files of its own: rows are
deduplicated here, on ``outcome_id`` (the copy that carries its event, else the first in file order); a row
whose event never reached the monitor cannot give features and is skipped. Both are counted. pyarrow reads the
files (training, not the hot path); it is imported only here, when a capture is read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from schemas.catalog import load_catalog
from schemas.errors import CaptureError, EventValidationError
from schemas.json_view import from_json_view

PARTITIONS = "date=*/*.parquet"
# The columns training reads, as the capture's schema types them.
COLUMNS = ("outcome_id", "score_event_id", "model", "model_version", "positive", "scored_at", "routing", "event")


@dataclass(frozen=True)
class CaptureSummary:
    """What was read: files, rows, duplicates dropped, rows without their event, the capture dates."""

    files: int
    rows: int
    duplicates: int
    without_event: int
    dates: tuple[str, ...]

    def line(self) -> str:
        skipped = " (skipped: no captured event to rebuild features from)" if self.without_event else ""
        return (
            f"capture: {self.files} files, {self.rows} rows, {self.duplicates} duplicate rows dropped, "
            f"{self.without_event} rows without their event{skipped}, dates {', '.join(self.dates) or '-'}"
        )


@dataclass(frozen=True)
class CapturedRows:
    """Deduplicated rows with an event, column-wise; ``event_index[i]`` is row i's event in ``events``."""

    summary: CaptureSummary
    model: np.ndarray  # str
    positive: np.ndarray  # int8
    scored_at: np.ndarray  # int64 ms
    routing: np.ndarray  # object: str or None
    model_version: np.ndarray  # str
    score_event_id: np.ndarray  # str: the event each row's score answered
    event_index: np.ndarray  # int64
    events: Sequence[dict[str, Any]]  # decoded (Avro-native), one per scored event

    def models(self) -> list[str]:
        return sorted(set(self.model.tolist()))

    def subset(self, keep: np.ndarray) -> CapturedRows:
        """The rows where ``keep`` (a boolean mask over rows) holds; the events and the summary are shared."""
        return replace(
            self,
            model=self.model[keep],
            positive=self.positive[keep],
            scored_at=self.scored_at[keep],
            routing=self.routing[keep],
            model_version=self.model_version[keep],
            score_event_id=self.score_event_id[keep],
            event_index=self.event_index[keep],
        )

    def rows_of(self, name: str) -> np.ndarray:
        """Indices of ``name``'s rows (a bank's decisions on the applications routed to it, or the lead's)."""
        return np.flatnonzero(self.model == name)


def read_capture(directory: Path, since_ms: int | None = None) -> CapturedRows:
    """Every row of the capture under ``directory`` (scored at or after ``since_ms`` when given).

    Raises:
        CaptureError: no such folder, no Parquet file in it, a file that is not readable Parquet or lacks a
            column (the file is named), an event that is not the JSON view of an application event.
    """
    files = _files(directory)
    columns = {name: [] for name in COLUMNS}  # type: dict[str, list[Any]]
    for path in files:
        table = _read(path, directory)
        for name in COLUMNS:
            columns[name] += table.column(name).to_pylist()
    return _rows(columns, files, since_ms)


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise CaptureError(f"capture directory {directory} does not exist")
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise CaptureError("reading a capture needs pyarrow: pip install 'crm-scorer[capture]'") from exc
    files = sorted(directory.glob(PARTITIONS))
    if not files:
        raise CaptureError(f"capture directory {directory} holds no date=YYYY-MM-DD/*.parquet file")
    return files


def _read(path: Path, directory: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = path.relative_to(directory)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise CaptureError(f"capture file {name} is not readable Parquet: {exc}") from exc
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise CaptureError(f"capture file {name} lacks the column(s) {', '.join(missing)}")
    return table


def _rows(columns: dict[str, list[Any]], files: list[Path], since_ms: int | None) -> CapturedRows:
    ids = columns["outcome_id"]
    keep = first_copies(ids, columns["event"])
    duplicates = len(ids) - len(keep)
    events = np.array(columns["event"], dtype=object)[keep]
    has_event = np.array([e is not None for e in events], dtype=bool)
    scored_at = np.array(columns["scored_at"], dtype=np.int64)[keep]
    chosen = has_event & (scored_at >= since_ms if since_ms is not None else True)
    rows = keep[chosen]
    summary = CaptureSummary(
        files=len(files),
        rows=len(ids),
        duplicates=duplicates,
        without_event=int((~has_event).sum()),
        dates=tuple(sorted({p.parent.name.removeprefix("date=") for p in files})),
    )
    event_index, decoded = _events(columns["score_event_id"], columns["event"], rows)
    return CapturedRows(
        summary=summary,
        model=np.array(columns["model"], dtype=object)[rows].astype(str),
        positive=np.array(columns["positive"], dtype=np.int8)[rows],
        scored_at=np.array(columns["scored_at"], dtype=np.int64)[rows],
        routing=np.array(columns["routing"], dtype=object)[rows],
        model_version=np.array(columns["model_version"], dtype=object)[rows].astype(str),
        score_event_id=np.array(columns["score_event_id"], dtype=object)[rows].astype(str),
        event_index=event_index,
        events=decoded,
    )


def first_copies(outcome_ids: Sequence[str], events: Sequence[str | None]) -> np.ndarray:
    """Positions of the row kept for each ``outcome_id``, in file order: the first copy that carries its event,
    else the first copy (a rebuilt partition may have written a row before or after its event was read)."""
    if not outcome_ids:
        return np.empty(0, dtype=np.int64)
    missing = np.array([e is None for e in events], dtype=bool)
    order = np.argsort(missing, kind="stable")  # copies with their event first, each group in file order
    _, first = np.unique(np.array(outcome_ids, dtype=object)[order], return_index=True)
    return np.sort(order[first])


def _events(score_event_ids: list[str], texts: list[str | None], rows: np.ndarray) -> tuple[np.ndarray, list]:
    """Each scored event decoded once (a bank decision and the lead's conversion answer the same event)."""
    position: dict[str, int] = {}
    decoded: list[dict[str, Any]] = []
    index = np.empty(len(rows), dtype=np.int64)
    for i, row in enumerate(rows.tolist()):
        key = score_event_ids[row]
        if key not in position:
            position[key] = len(decoded)
            decoded.append(_event(texts[row], key))
        index[i] = position[key]
    return index, decoded


def _event(text: str | None, score_event_id: str) -> dict[str, Any]:
    try:
        # the reader schema the scorer decodes events into
        return from_json_view(json.loads(str(text)), load_catalog().application_event_latest.raw)
    except (json.JSONDecodeError, EventValidationError, TypeError, KeyError) as exc:
        raise CaptureError(f"captured event {score_event_id} is not an application event's JSON view: {exc}") from exc
