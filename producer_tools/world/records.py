"""Turn the world's columns into Avro-native event records (the shape fastavro writes and reads).

Dates become ``datetime.date``, counts ``int``, amounts ``float``, flags ``bool``; NaN and None become None.
Every field of ``applicant`` and ``activity`` is present, in schema order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np

from schemas import load_catalog

Columns = dict[str, np.ndarray]

_V1 = load_catalog().get("application_event.v1")
_V2 = load_catalog().get("application_event.v2")
# Avro primitive type -> the converter kind below; a union's non-null branch decides.
_KINDS = {"string": "str", "double": "float", "float": "float", "int": "int", "long": "int", "boolean": "bool"}


def _kind(avro_type: Any) -> str:
    """The converter a field needs: ``date`` for the date logical type, else by its primitive type."""
    if isinstance(avro_type, list):
        return _kind(next(t for t in avro_type if t != "null"))
    if isinstance(avro_type, dict):
        return "date" if avro_type.get("logicalType") == "date" else _kind(avro_type["type"])
    return _KINDS[avro_type]


# Avro field -> Python kind, in schema order, read from the schema files.
APPLICANT_FIELDS = {name: _kind(t) for name, t in _V1.fields("applicant").items()}
ACTIVITY_FIELDS = {name: _kind(t) for name, t in _V1.fields("activity").items()}
V2_FIELDS = _V2.added_since(_V1)  # channel, merchant_region
EVENT_TYPES: tuple[str, ...] = tuple(_V1.fields()["event_type"]["symbols"])


def _strings(col: np.ndarray) -> list[Any]:
    return list(col.tolist())


def _masked(values: list[Any], missing: list[bool]) -> list[Any]:
    return [None if m else v for v, m in zip(values, missing, strict=True)]


def _floats(col: np.ndarray) -> list[Any]:
    return _masked(col.tolist(), np.isnan(col).tolist())


def _ints(col: np.ndarray) -> list[Any]:
    return _masked(np.nan_to_num(col).astype(np.int64).tolist(), np.isnan(col).tolist())


def _bools(col: np.ndarray) -> list[Any]:
    return _masked((col == 1.0).tolist(), np.isnan(col).tolist())


def _dates(col: np.ndarray) -> list[Any]:
    ordinals = np.nan_to_num(col, nan=1.0).astype(np.int64).tolist()
    return [None if m else dt.date.fromordinal(d) for d, m in zip(ordinals, np.isnan(col).tolist(), strict=True)]


_CONVERT: dict[str, Callable[[np.ndarray], list[Any]]] = {
    "str": _strings,
    "float": _floats,
    "int": _ints,
    "bool": _bools,
    "date": _dates,
}


def _rows(cols: Columns, fields: dict[str, str]) -> list[dict[str, Any]]:
    values = [_CONVERT[kind](cols[name]) for name, kind in fields.items()]
    names = list(fields)
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def build_events(
    ids: Columns,
    event_type: np.ndarray,
    occurred_at: list[dt.datetime],
    v2: Columns | None,
    applicant: Columns,
    activity: Columns,
) -> list[dict[str, Any]]:
    """Avro-native event dicts; ``v2`` columns (channel, merchant_region) are added only when given."""
    applicants = _rows(applicant, APPLICANT_FIELDS)
    activities = _rows(activity, ACTIVITY_FIELDS)
    types = [EVENT_TYPES[k] for k in event_type.tolist()]
    heads = zip(ids["event_id"].tolist(), ids["application_id"].tolist(), ids["lead_id"].tolist(), strict=True)
    extra = zip(*(_strings(v2[name]) for name in V2_FIELDS), strict=True) if v2 else None
    events = []
    for (event_id, application_id, lead_id), kind, at, app, act in zip(
        heads, types, occurred_at, applicants, activities, strict=True
    ):
        event: dict[str, Any] = {
            "event_id": event_id,
            "application_id": application_id,
            "lead_id": lead_id,
            "event_type": kind,
            "occurred_at": at,
        }
        if extra is not None:
            event.update(zip(V2_FIELDS, next(extra), strict=True))
        event["applicant"] = app
        event["activity"] = act
        events.append(event)
    return events
