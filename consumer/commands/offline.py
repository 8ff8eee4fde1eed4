"""``crm-scorer score``: the streaming engine over a JSONL file, for backfills and checks.

Each input line is the JSON view of an application event; each output line the JSON view of its score result:
the result bytes the engine writes on the stream, decoded (so a line is exactly what a consumer of the output
topic would see). A line that is not a valid event is reported on stderr with its line number and reason; the
run goes on.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from fastavro import schemaless_writer
from fastavro.validation import ValidationError, validate

from consumer.core.engine import ScoringEngine
from consumer.core.validation import check_event
from schemas import ResultDecoder, load_catalog
from schemas.errors import EventValidationError, InvalidEventError
from schemas.json_view import from_json_view, to_json_view

BATCH = 2000


@dataclass
class OfflineSummary:
    lines: int = 0
    scored: int = 0
    invalid: int = 0
    seconds: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.scored / self.seconds if self.seconds else 0.0


def parse_event(line: str, schema: dict[str, Any], parsed: Any) -> dict[str, Any]:
    """One JSONL line as a validated Avro-native event. Raises InvalidEventError naming the field."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EventValidationError(f"not JSON: {exc.msg} at column {exc.colno}", field="$") from exc
    event = from_json_view(obj, schema)
    try:
        # Writing is the fast check (fastavro's validate builds an error object per union branch tried);
        # only a record that fails it pays for validate, to name the fields.
        schemaless_writer(io.BytesIO(), parsed, event)
    except Exception:
        pass
    else:
        check_event(event)
        return event
    try:
        validate(event, parsed, raise_errors=True)
    except ValidationError as exc:
        fields = sorted({_field_path(e.field, schema) for e in exc.errors if e.field})
        message = f"does not match {schema['name']}: wrong type or missing"
        raise EventValidationError(message, field=", ".join(fields)) from exc
    raise EventValidationError(f"cannot be written as {schema['name']}", field="$")


def _field_path(avro_path: str, schema: dict[str, Any]) -> str:
    """fastavro's ``crm.events.Applicant.monthprofit`` as the event's own path, ``applicant.monthprofit``."""
    namespace = schema.get("namespace", "")
    for field in schema["fields"]:
        ftype = field["type"]
        if isinstance(ftype, dict) and ftype.get("type") == "record":
            prefix = f"{namespace}.{ftype['name']}." if namespace else f"{ftype['name']}."
            if avro_path.startswith(prefix):
                return f"{field['name']}.{avro_path[len(prefix) :]}"
    return avro_path.removeprefix(f"{namespace}.{schema['name']}.")


def result_line(result: dict[str, Any]) -> str:
    """One output line: the JSON view of a decoded score result."""
    return json.dumps(to_json_view(result), ensure_ascii=False) + "\n"


def _batches(lines: TextIO, schema: dict[str, Any], parsed: Any, summary: OfflineSummary) -> Iterator[list]:
    batch: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        summary.lines += 1
        try:
            batch.append(parse_event(line, schema, parsed))
        except InvalidEventError as exc:
            summary.invalid += 1
            print(f"line {number}: {exc.reason}: {exc}", file=sys.stderr)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def score_file(engine: ScoringEngine, source: Path, target: Path, schema: dict[str, Any]) -> OfflineSummary:
    """Score every valid event of ``source`` into ``target``; returns the counts and the time taken."""
    import fastavro

    parsed = fastavro.parse_schema(schema)
    results = ResultDecoder(load_catalog())
    summary = OfflineSummary()
    started = time.perf_counter()
    with source.open(encoding="utf-8") as lines, target.open("w", encoding="utf-8") as out:
        for batch in _batches(lines, schema, parsed, summary):
            for scored in engine.score_decoded(batch).scored:
                out.write(result_line(results.decode(scored.value)))
            summary.scored += len(batch)
    summary.seconds = time.perf_counter() - started
    return summary
