"""The Avro schemas this project ships, parsed once and looked up by name, version or fingerprint.

Every ``<name>.v<N>.avsc`` file in the ``schemas`` package directory is a version; the catalog is built by
globbing them, so adding ``application_event.v3.avsc`` needs no code change. A version's fingerprint is the
CRC-64-AVRO (Rabin) fingerprint of its Parsing Canonical Form, as the 8 bytes the Avro single-object encoding
carries: little-endian, the same bytes as Java's ``SchemaNormalization.parsingFingerprint("CRC-64-AVRO", s)``
(fastavro's hex string already lists them in that order).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from schemas.errors import ConfigError

SCHEMA_DIR = Path(__file__).resolve().parent
APPLICATION_EVENT = "application_event"
SCORE_RESULT = "score_result"
OUTCOME = "outcome"

_FILE_NAME = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\.v(?P<number>[1-9][0-9]*)\.avsc$")


@dataclass(frozen=True, slots=True, eq=False)
class SchemaVersion:
    """One parsed Avro record schema: a shipped version, or a writer schema fetched from the registry.

    ``parsed`` is fastavro's parsed form, shared by every decoder and encoder: never mutate it.
    """

    label: str  # what error messages call it: "application_event.v2" or "registry id 7"
    full_name: str  # the record's namespaced name, e.g. "crm.events.ApplicationEvent"
    schema_str: str
    raw: dict[str, Any] = field(repr=False)
    parsed: dict[str, Any] = field(repr=False)
    fingerprint: bytes = field(repr=False)

    @classmethod
    def parse(cls, schema_str: str, label: str) -> SchemaVersion:
        """Parse an Avro record schema from JSON text.

        Raises:
            ValueError: the text is not JSON, not an Avro schema, or not a record (fastavro's exceptions
                are wrapped so callers translate one type into their own error).
        """
        try:
            raw = json.loads(schema_str)
            parsed = parse_schema(raw, named_schemas={})
            canonical = to_parsing_canonical_form(raw)
        except Exception as exc:  # fastavro raises SchemaParseException, UnknownType, KeyError, ...
            raise ValueError(f"{label}: not a valid Avro schema: {exc}") from exc
        if not isinstance(parsed, dict) or parsed.get("type") != "record":
            raise ValueError(f"{label}: not an Avro record schema")
        return cls(
            label=label,
            full_name=parsed["name"],
            schema_str=schema_str,
            raw=raw,
            parsed=parsed,
            fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
        )

    def fields(self, record: str | None = None) -> dict[str, Any]:
        """Field name -> Avro type as the file writes it, in schema order: the top-level fields, or those of
        the nested record field ``record`` (e.g. ``"applicant"``).

        Raises:
            KeyError: there is no field ``record``, or it is not a record.
        """
        fields = self.raw["fields"]
        if record is not None:
            ftype = next((f["type"] for f in fields if f["name"] == record), None)
            branches = ftype if isinstance(ftype, list) else [ftype]
            nested = next((b for b in branches if isinstance(b, dict) and b.get("type") == "record"), None)
            if nested is None:
                raise KeyError(f"{self.label}: no record field {record!r}")
            fields = nested["fields"]
        return {f["name"]: f["type"] for f in fields}

    def added_since(self, older: SchemaVersion) -> tuple[str, ...]:
        """The top-level fields this version has and ``older`` lacks (what an evolution added), in schema order."""
        before = older.fields()
        return tuple(name for name in self.fields() if name not in before)


class SchemaCatalog:
    """The shipped schema versions, by ``name.vN`` and by fingerprint."""

    def __init__(self, versions: dict[str, SchemaVersion]) -> None:
        self._by_label = versions
        # When two files share a canonical form (a doc-only change), the later version wins: same bytes either way.
        self._by_fingerprint = {v.fingerprint: v for _, v in sorted(versions.items(), key=_version_order)}

    def __iter__(self) -> Iterator[SchemaVersion]:
        return iter(self._by_label.values())

    def __len__(self) -> int:
        return len(self._by_label)

    def get(self, name_version: str) -> SchemaVersion:
        """The version called ``name_version``, e.g. ``"application_event.v1"``.

        Raises:
            KeyError: no such file was shipped.
        """
        try:
            return self._by_label[name_version]
        except KeyError:
            raise KeyError(f"no schema {name_version!r}; shipped: {sorted(self._by_label)}") from None

    def by_name_version(self, name: str, version: str) -> SchemaVersion:
        """The version ``version`` (``"v1"``) of schema ``name`` (``"application_event"``). Raises KeyError."""
        return self.get(f"{name}.{version}")

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        """The shipped version whose 8-byte CRC-64-AVRO fingerprint is ``fp``, or None."""
        return self._by_fingerprint.get(fp)

    def fingerprint_of(self, name_version: str) -> bytes:
        """The 8 fingerprint bytes of ``name_version`` as single-object framing writes them. Raises KeyError."""
        return self.get(name_version).fingerprint

    def latest(self, name: str) -> SchemaVersion:
        """The highest shipped version of schema ``name``.

        Raises:
            KeyError: no version of ``name`` was shipped.
        """
        versions = [(label, v) for label, v in self._by_label.items() if label.rsplit(".", 1)[0] == name]
        if not versions:
            raise KeyError(f"no version of schema {name!r} is shipped")
        return max(versions, key=_version_order)[1]

    @property
    def application_event_latest(self) -> SchemaVersion:
        return self.latest(APPLICATION_EVENT)

    @property
    def score_result(self) -> SchemaVersion:
        return self.latest(SCORE_RESULT)

    @property
    def outcome(self) -> SchemaVersion:
        return self.latest(OUTCOME)


def load_catalog(directory: Path | None = None) -> SchemaCatalog:
    """Parse every ``<name>.v<N>.avsc`` in ``directory`` (default: the ``schemas`` package), once per directory.

    Raises:
        ConfigError: a file is misnamed or is not a valid Avro record schema; the message names the file.
    """
    return _load(SCHEMA_DIR if directory is None else directory.resolve())


@functools.cache
def _load(directory: Path) -> SchemaCatalog:
    versions: dict[str, SchemaVersion] = {}
    for path in sorted(directory.glob("*.avsc")):
        if not _FILE_NAME.match(path.name):
            raise ConfigError(f"{path.name}: a schema file must be named <name>.v<N>.avsc")
        label = path.name.removesuffix(".avsc")
        try:
            versions[label] = SchemaVersion.parse(path.read_text(encoding="utf-8"), label)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path.name}: {exc}") from exc
    if not versions:
        raise ConfigError(f"{directory.name}: no *.avsc schema files found")
    return SchemaCatalog(versions)


def _version_order(item: tuple[str, SchemaVersion]) -> tuple[str, int]:
    name, _, number = item[0].rpartition(".v")
    return name, int(number)
