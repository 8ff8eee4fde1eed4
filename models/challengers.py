"""The challenger record: which set's models score in the shadow of the active set (at most one challenger per
model: one set holds them all), as recorded in the model store and published on the control topic.

``<store>/challenger.json`` holds the current record; ``crm-scorer models shadow`` writes it and publishes it under
the key ``<channel>.shadow`` of the control topic (``shadow_key``), which every worker follows like the
activations. A record whose ``version`` is empty clears the challenger. File logic only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from models.store import ModelStore, StoreError

FILE = "challenger.json"
_FIELDS = ("version", "manifest_sha256", "at", "by", "reason")


def shadow_key(channel: str) -> str:
    """The control topic's key of ``channel``'s challenger records."""
    return f"{channel}.shadow"


@dataclass(frozen=True)
class ShadowRecord:
    """A challenger set (``version``, its manifest's sha256) and the models of it that challenge the champion."""

    version: str  # "" = no challenger
    models: tuple[str, ...]
    manifest_sha256: str
    at: str  # ISO 8601, UTC
    by: str
    reason: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self) | {"models": list(self.models)}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ShadowRecord:
        """Raises ValueError naming the problem: not JSON, or a field missing or of another type."""
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"challenger record is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError("challenger record is not a JSON object")
        bad = [f for f in _FIELDS if not isinstance(raw.get(f), str)]
        models = raw.get("models")
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            bad.append("models")
        if bad or not isinstance(models, list):
            raise ValueError(f"challenger record: {', '.join(bad)} missing or of the wrong type")
        return cls(raw["version"], tuple(models), *(raw[f] for f in _FIELDS[1:]))

    @property
    def cleared(self) -> bool:
        return not self.version


def shadow(store: ModelStore, version: str, models: tuple[str, ...], by: str, reason: str) -> ShadowRecord:
    """Record set ``version``'s ``models`` as the challengers (verified first); returns the record to publish.

    Raises:
        StoreError: no such set, it fails verification, it is the active set, or it lacks one of ``models``.
    """
    if version == store.active():
        raise StoreError(f"model set {version} is the active set: it cannot challenge itself")
    manifest = store.manifest(version)
    missing = [m for m in models if m not in manifest.models]
    if missing or not models:
        raise StoreError(f"model set {version}: no model {', '.join(missing) or '(none named)'} to challenge with")
    store.check(version, list(manifest.models))
    return _write(store, ShadowRecord(version, models, store.manifest_sha256(version), _now(), by, reason))


def clear(store: ModelStore, by: str, reason: str) -> ShadowRecord:
    """Record that no set challenges any more; returns the record to publish."""
    return _write(store, ShadowRecord("", (), "", _now(), by, reason))


def current(store: ModelStore) -> ShadowRecord | None:
    """The recorded challenger (None: none was ever recorded). Raises StoreError on an unreadable record."""
    path = store.root / FILE
    if not path.is_file():
        return None
    try:
        return ShadowRecord.from_json(path.read_bytes())
    except ValueError as exc:
        raise StoreError(f"{path}: {exc}") from exc


def _write(store: ModelStore, record: ShadowRecord) -> ShadowRecord:
    store.root.mkdir(parents=True, exist_ok=True)
    path: Path = store.root / FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(record.to_json() + b"\n")
    os.replace(temporary, path)
    return record


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
