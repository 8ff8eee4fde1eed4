"""Where the events to publish come from: the synthetic world, or a JSONL file in the JSON view."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from producer_tools.world import DEFAULT_START, generate
from schemas import load_catalog
from schemas.errors import EventValidationError
from schemas.json_view import from_json_view


def world_events(count: int, seed: int, scenario: str, schema_version: str, live: bool) -> Iterator[dict[str, Any]]:
    """``count`` events of the world drawn from ``seed`` and ``scenario``.

    With live timestamps the world starts now: ages and tenures are measured against the event time, so
    stamping today's time on events drawn for another date would shift them (and show up as drift).
    """
    # mixed draws v2 events: the v1 writer simply leaves the two v2 fields out.
    version = "v2" if schema_version == "mixed" else schema_version
    start = dt.datetime.now(dt.UTC) if live else DEFAULT_START
    return iter(generate(count, seed, scenario=scenario, schema_version=version, start=start).events)


def read_events(path: Path, limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Avro-native events from a JSONL file in the JSON view, lazily; blank lines are skipped.

    Raises:
        EventValidationError: a line is not JSON or its dates do not parse; the message names the line.
        OSError: the file cannot be read.
    """
    schema = load_catalog().application_event_latest.parsed
    with path.open(encoding="utf-8") as lines:
        taken = 0
        for number, line in enumerate(lines, start=1):
            if limit is not None and taken >= limit:
                return
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                obj.pop("truth", None)  # `generate --labels` adds the ground truth; it is not part of the event
                event = from_json_view(obj, schema)
            except (json.JSONDecodeError, AttributeError, EventValidationError) as exc:
                raise EventValidationError(f"{path.name} line {number}: {exc}") from exc
            taken += 1
            yield event
