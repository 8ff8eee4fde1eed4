"""The JSON view of our Avro records: what `crm-producer generate` writes and `crm-scorer score` reads.

Avro `date` fields become ``YYYY-MM-DD`` strings and `timestamp-millis` fields ISO-8601 UTC strings with
milliseconds (``2026-03-01T09:30:00.123Z``); everything else is as fastavro gives it. Which fields carry a
logical type is read from the schema, so a new schema version needs no change here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from schemas.errors import EventValidationError

_UTC = dt.UTC


def to_json_view(value: Any) -> Any:
    """Turn an Avro-native Python value (dates, datetimes, nested dicts, lists) into JSON-ready values."""
    if isinstance(value, dt.datetime):
        return value.astimezone(_UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):  # the uuid logical type decodes to uuid.UUID
        return str(value)
    if isinstance(value, Mapping):
        return {key: to_json_view(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_view(item) for item in value]
    return value


def from_json_view(obj: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a JSON view back into an Avro-native record of ``schema`` (a parsed record schema).

    Raises:
        EventValidationError: a date or timestamp string does not parse; the message names the field path.
    """
    return _record(obj, schema, prefix="")


def _record(obj: Mapping[str, Any], schema: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise EventValidationError(f"expected an object, got {type(obj).__name__}", field=prefix or "$")
    out = dict(obj)
    for field in schema["fields"]:
        name = field["name"]
        if name in out and out[name] is not None:
            out[name] = _value(out[name], field["type"], f"{prefix}{name}")
    return out


def _value(value: Any, ftype: Any, path: str) -> Any:
    if isinstance(ftype, list):  # a union: the first non-null branch that is a record or has a logical type
        for branch in ftype:
            if branch != "null":
                return _value(value, branch, path)
        return value
    if isinstance(ftype, dict):
        logical = ftype.get("logicalType")
        if logical == "date" and isinstance(value, str):
            return _parse(dt.date.fromisoformat, value, path)
        if logical == "timestamp-millis" and isinstance(value, str):
            parsed = _parse(dt.datetime.fromisoformat, value.replace("Z", "+00:00"), path)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=_UTC)
        if ftype.get("type") == "record":
            return _record(value, ftype, prefix=f"{path}.")
    return value


def _parse(parser: Any, value: str, path: str) -> Any:
    try:
        return parser(value)
    except ValueError as exc:
        raise EventValidationError(f"not an ISO-8601 date/time: {value[:40]!r}", field=path) from exc
