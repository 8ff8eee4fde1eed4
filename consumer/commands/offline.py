"""``crm-scorer score``: the streaming engine over a JSONL file, for backfills and checks.

Each input line is the JSON view of an application event. It is written as the bytes a producer would put on
the input topic and scored by the streaming engine's ``score_batch``; each output line is the JSON view of the
result bytes the engine writes, decoded (exactly what a consumer of the output topic would see). A line the
stream would dead-letter is reported on stderr with its line number and reason; the run goes on.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from fastavro.validation import ValidationError, validate

from consumer.core.engine import ScoringEngine
from schemas import ResultDecoder, SchemaVersion, SingleObjectEncoder, load_catalog
from schemas.errors import EventValidationError, InvalidEventError, RecordEncodingError
from schemas.json_view import from_json_view, to_json_view

BATCH = 2000


class _Batch(NamedTuple):
    payloads: list[bytes]
    line_numbers: list[int]  # of each payload, for the errors the engine reports by index


@dataclass
class OfflineSummary:
    lines: int = 0
    scored: int = 0
    invalid: int = 0
    seconds: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.scored / self.seconds if self.seconds else 0.0


def encode_line(line: str, encode: SingleObjectEncoder) -> bytes:
    """One JSONL line as the framed bytes a producer would put on the input topic (``encode``'s schema).

    Raises:
        EventValidationError: the line is not JSON, or does not fit the schema; the message names the fields.
    """
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EventValidationError(f"not JSON: {exc.msg} at column {exc.colno}", field="$") from exc
    schema = encode.schema
    event = from_json_view(obj, schema.raw)
    try:
        # Writing is the fast check (fastavro's validate builds an error object per union branch tried);
        # only a record that fails it pays for validate, to name the fields.
        return encode(event)
    except RecordEncodingError as exc:
        failure = exc
    name = schema.raw["name"]
    try:
        validate(event, schema.parsed, raise_errors=True)
    except ValidationError as exc:
        fields = sorted({_field_path(e.field, schema.raw) for e in exc.errors if e.field})
        raise EventValidationError(f"does not match {name}: wrong type or missing", field=", ".join(fields)) from exc
    raise EventValidationError(f"cannot be written as {name}", field="$") from failure


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


def _batches(lines: TextIO, encode: SingleObjectEncoder, summary: OfflineSummary) -> Iterator[_Batch]:
    batch = _Batch([], [])
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        summary.lines += 1
        try:
            batch.payloads.append(encode_line(line, encode))
            batch.line_numbers.append(number)
        except InvalidEventError as exc:
            _reject(number, exc, summary)
        if len(batch.payloads) >= BATCH:
            yield batch
            batch = _Batch([], [])
    if batch.payloads:
        yield batch


def _reject(number: int, error: InvalidEventError, summary: OfflineSummary) -> None:
    summary.invalid += 1
    print(f"line {number}: {error.reason}: {error}", file=sys.stderr)


def score_file(engine: ScoringEngine, source: Path, target: Path, reader: SchemaVersion) -> OfflineSummary:
    """Score every valid event of ``source`` into ``target``; returns the counts and the time taken.

    Each line is written as ``reader`` single-object bytes and scored by ``score_batch``, as if it had been
    consumed from the input topic: what the stream would dead-letter is reported with its line number.
    """
    encode, results = SingleObjectEncoder(reader), ResultDecoder(load_catalog())
    summary = OfflineSummary()
    started = time.perf_counter()
    with source.open(encoding="utf-8") as lines, target.open("w", encoding="utf-8") as out:
        for batch in _batches(lines, encode, summary):
            outcome = engine.score_batch(batch.payloads)
            for rejected in outcome.rejected:
                _reject(batch.line_numbers[rejected.index], rejected.error, summary)
            for scored in outcome.scored:
                out.write(result_line(results.decode(scored.value)))
            summary.scored += len(outcome.scored)
    summary.seconds = time.perf_counter() - started
    return summary
