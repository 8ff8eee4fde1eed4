"""Checks on a decoded event before it is scored: the ids it must carry and the event time.

Ids end up in Kafka keys, headers and logs, so they must match a safe pattern and length before anything
uses them. A failing check is an ``EventValidationError`` naming the field: the message is dead-lettered.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from schemas.errors import EventValidationError

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
ID_FIELDS = ("event_id", "application_id", "lead_id")
# Event times outside this window are corrupt, not old or early: ages computed from them would be nonsense.
EARLIEST_EVENT = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LATEST_EVENT = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def check_event(event: dict[str, Any]) -> None:
    """Raise EventValidationError (reason ``missing_id`` / ``invalid_field``) when ``event`` cannot be scored."""
    for name in ID_FIELDS:
        value = event.get(name)
        if value is not None and not isinstance(value, str):  # the uuid logical type decodes to uuid.UUID
            value = str(value)
        if not value:
            raise EventValidationError("is missing or empty", field=name, reason="missing_id")
        if not SAFE_ID.fullmatch(value):
            raise EventValidationError(
                f"must be 1-64 characters of [A-Za-z0-9._:-] (got {len(value)} characters)", field=name
            )
    occurred = event.get("occurred_at")
    if not isinstance(occurred, dt.datetime) or not EARLIEST_EVENT <= occurred < LATEST_EVENT:
        raise EventValidationError(f"event time {occurred!r:.40} is outside 2000..2100", field="occurred_at")
