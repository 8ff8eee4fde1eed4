"""Decoding framed Avro message values into records, one at a time or a batch at a time.

The framing is detected per message by ``schemas.framing.framing_of``, the one place that knows it. The
writer schema comes from the catalog (by fingerprint) or the Schema Registry (by id, fetched once per id: ids
are immutable). When the writer's Parsing Canonical Form equals the reader's, the body is read with the
reader's parsed schema and no resolution; otherwise fastavro resolves the writer to the reader (fields the
writer lacks get the reader's defaults). Records are returned as fastavro gives them: ``timestamp-millis``
as aware ``datetime``, ``date`` as ``date``, ``uuid`` as ``uuid.UUID``.

Nothing here imports confluent_kafka: the registry adapter lives in ``schemas.registry``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any, NamedTuple, cast

from fastavro import schemaless_reader
from fastavro.schema import to_parsing_canonical_form

from schemas.catalog import SchemaCatalog, SchemaVersion, load_catalog
from schemas.errors import AvroDecodeError, FramingError, InvalidEventError, UnknownSchemaError
from schemas.framing import CONFLUENT_HEADER_SIZE, CONFLUENT_MAGIC, SINGLE_OBJECT_HEADER_SIZE, SchemaSource, framing_of

# An id the registry did not know is asked again after this: a flood of messages naming it costs one request per
# interval, and an id registered meanwhile is found.
MISSING_ID_TTL_S = 10.0
# Told (writer, reader) once per writer schema the decoder meets for the first time (per canonical form, whatever
# framing named it): the schema-to-model contract runs there, never per message.
WriterWatcher = Callable[[SchemaVersion, SchemaVersion], None]


@dataclass(frozen=True, slots=True)
class _ReadPlan:
    """How to read a body written with one writer schema: ``reader`` is None when no resolution is needed.

    ``fill`` is set when the writer is the reader minus top-level fields that have plain defaults (what adding
    an optional field makes): the body is read with the writer's own schema, about twice as fast as fastavro's
    resolution, and those fields get their defaults (the same record, in the same key order, as resolution).
    """

    writer: dict[str, Any]
    reader: dict[str, Any] | None
    label: str
    fill: tuple[tuple[str, Any], ...] | None = None


class DecodedBatch(NamedTuple):
    """Per-message outcomes of one batch, aligned with its payloads: exactly one of the two is None."""

    records: list[dict[str, Any] | None]
    errors: list[InvalidEventError | None]


class RecordDecoder:
    """Decodes framed values of one record type into dicts shaped by ``reader`` (a catalog version).

    Caches grow with the number of distinct writer schemas (a handful), never with the number of messages.
    Not thread-safe: one decoder per worker.
    """

    expects = "the reader's record type"

    def __init__(self, reader: SchemaVersion, catalog: SchemaCatalog, registry: SchemaSource | None = None) -> None:
        self.reader = reader
        self._catalog = catalog
        self._registry = registry
        self._plans: dict[bytes, _ReadPlan] = {}  # by single-object fingerprint
        self._plans_by_id: dict[int, _ReadPlan] = {}  # by registry id
        self._writers_by_id: dict[int, SchemaVersion] = {}
        self._unparsable_ids: dict[int, str] = {}  # an id's text never changes: remember why it is unusable
        self._missing_ids: dict[int, tuple[float, str]] = {}  # id -> (when the registry said 404, its message)
        self._clock: Callable[[], float] = time.monotonic
        self._watchers: list[WriterWatcher] = []

    def watch_writers(self, watcher: WriterWatcher) -> None:
        """Call ``watcher(writer, reader)`` when a writer schema is first resolved, before its first message is
        read. A watcher must not raise: it runs inside the decoding of that message."""
        self._watchers.append(watcher)

    def decode(self, payload: bytes | None) -> dict[str, Any]:
        """The record framed in ``payload``.

        Raises:
            FramingError: empty value (``empty_value``) or unknown framing (``unknown_framing``).
            UnknownSchemaError: unknown fingerprint or registry id, or a writer of another record type.
            AvroDecodeError: the body is truncated, corrupt, or followed by trailing bytes.
            RegistryUnavailableError: the registry did not answer; transient, the message is not at fault.
        """
        framing = framing_of(payload)
        data = cast(bytes, payload)  # framing_of has rejected None and b""
        if framing == "single-object":
            plan = self._plans.get(data[2:SINGLE_OBJECT_HEADER_SIZE]) or self._single_object_plan(data)
            return _read(data, SINGLE_OBJECT_HEADER_SIZE, plan)
        if len(data) < CONFLUENT_HEADER_SIZE:
            raise FramingError(f"Confluent header cut short: {len(data)} bytes", reason="unknown_framing")
        plan = self._plans_by_id.get(_schema_id(data)) or self._confluent_plan(data)
        return _read(data, CONFLUENT_HEADER_SIZE, plan)

    def decode_batch(self, payloads: Sequence[bytes | None]) -> DecodedBatch:
        """Decode every payload, capturing each message's ``InvalidEventError`` instead of raising it.

        Raises:
            RegistryUnavailableError: the registry did not answer; retry the whole batch (decoding has no
                side effect besides caching).
        """
        records: list[dict[str, Any] | None] = [None] * len(payloads)
        errors: list[InvalidEventError | None] = [None] * len(payloads)
        decode = self.decode
        for i, payload in enumerate(payloads):
            try:
                records[i] = decode(payload)
            except InvalidEventError as exc:
                # Without its traceback: the frames it holds reference this list, a cycle only a full garbage
                # collection would free; the reason and the message are what a dead letter carries.
                errors[i] = exc.with_traceback(None)
        return DecodedBatch(records, errors)

    def needs_registry(self, payload: bytes | None) -> int | None:
        """The registry id ``payload`` names when decoding it would ask the registry (a Confluent-framed value
        whose writer schema is not cached yet, nor known to be missing or unusable); else None. Sends nothing."""
        if (
            self._registry is None
            or not payload
            or payload[0] != CONFLUENT_MAGIC
            or len(payload) < CONFLUENT_HEADER_SIZE
        ):
            return None
        schema_id = _schema_id(payload)
        if schema_id in self._writers_by_id or schema_id in self._unparsable_ids or self._known_missing(schema_id):
            return None
        return schema_id

    def resolve(self, schema_id: int) -> None:
        """Fetch and cache the writer schema of ``schema_id`` now. An id the registry does not know (or that holds
        an unusable schema) is remembered as such: the messages naming it are dead-lettered when decoded.

        Raises:
            RegistryUnavailableError: the registry did not answer.
        """
        if schema_id in self._writers_by_id:
            return
        with contextlib.suppress(UnknownSchemaError):
            self._fetch_writer(schema_id)

    def _known_missing(self, schema_id: int) -> bool:
        missing = self._missing_ids.get(schema_id)
        if missing is None:
            return False
        if self._clock() - missing[0] < MISSING_ID_TTL_S:
            return True
        del self._missing_ids[schema_id]
        return False

    def _single_object_plan(self, payload: bytes) -> _ReadPlan:
        if len(payload) < SINGLE_OBJECT_HEADER_SIZE:
            raise FramingError(f"single-object header cut short: {len(payload)} bytes", reason="unknown_framing")
        fp = payload[2:SINGLE_OBJECT_HEADER_SIZE]
        writer = self._catalog.by_fingerprint(fp)
        if writer is None:
            raise UnknownSchemaError(f"no shipped schema has fingerprint {fp.hex()} (single-object framing)")
        plan = self._plans[fp] = self._plan(writer)
        return plan

    def _confluent_plan(self, payload: bytes) -> _ReadPlan:
        schema_id = _schema_id(payload)
        writer = self._writers_by_id.get(schema_id) or self._fetch_writer(schema_id)
        plan = self._plans_by_id[schema_id] = self._plan(writer)
        return plan

    def _fetch_writer(self, schema_id: int) -> SchemaVersion:
        if self._registry is None:
            raise UnknownSchemaError(f"registry id {schema_id}: Confluent framing, but no schema registry is set")
        if schema_id in self._unparsable_ids:
            raise UnknownSchemaError(self._unparsable_ids[schema_id])
        if self._known_missing(schema_id):
            raise UnknownSchemaError(self._missing_ids[schema_id][1])
        try:
            schema_str = self._registry.get_schema_str(schema_id)
        except UnknownSchemaError as exc:
            self._missing_ids[schema_id] = (self._clock(), str(exc))
            raise
        try:
            writer = SchemaVersion.parse(schema_str, f"registry id {schema_id}")
        except ValueError as exc:
            self._unparsable_ids[schema_id] = str(exc)
            raise UnknownSchemaError(str(exc)) from exc
        self._writers_by_id[schema_id] = writer
        return writer

    def _plan(self, writer: SchemaVersion) -> _ReadPlan:
        """The read plan for ``writer``, shared by every framing that names the same canonical form."""
        plan = self._plans.get(writer.fingerprint)
        if plan is not None:
            return plan
        if writer.full_name != self.reader.full_name:
            raise UnknownSchemaError(f"writer schema {writer.full_name} is not {self.expects} ({writer.label})")
        label = f"{writer.label} ({writer.full_name})"
        if writer.fingerprint == self.reader.fingerprint:
            # Same canonical form, same bytes: the reader's parsed schema reads it with no resolution.
            plan = _ReadPlan(self.reader.parsed, None, label)
        elif (fill := _added_fields(writer, self.reader)) is not None:
            plan = _ReadPlan(writer.parsed, None, label, fill)
        else:
            plan = _ReadPlan(writer.parsed, self.reader.parsed, label)
        self._plans[writer.fingerprint] = plan
        for watcher in self._watchers:
            watcher(writer, self.reader)
        return plan


class EventDecoder(RecordDecoder):
    """Decodes application events into the latest shipped application event schema (or ``reader_schema``)."""

    expects = "an application event"

    def __init__(
        self,
        catalog: SchemaCatalog | None = None,
        registry: SchemaSource | None = None,
        *,
        reader_schema: SchemaVersion | None = None,
    ) -> None:
        catalog = load_catalog() if catalog is None else catalog
        super().__init__(reader_schema or catalog.application_event_latest, catalog, registry)


class ResultDecoder(RecordDecoder):
    """Decodes score results (the output topic) into the latest shipped score result schema."""

    expects = "a score result"

    def __init__(self, catalog: SchemaCatalog | None = None, registry: SchemaSource | None = None) -> None:
        catalog = load_catalog() if catalog is None else catalog
        super().__init__(catalog.score_result, catalog, registry)


def _schema_id(payload: bytes) -> int:
    return int.from_bytes(payload[1:CONFLUENT_HEADER_SIZE], "big")


def _read(payload: bytes, offset: int, plan: _ReadPlan) -> dict[str, Any]:
    buffer = BytesIO(payload)  # shares the bytes object's memory until written to: no copy
    buffer.seek(offset)
    try:
        record = schemaless_reader(buffer, plan.writer, plan.reader)
    except Exception as exc:  # hostile bytes raise EOFError, UnicodeDecodeError, IndexError, ValueError, ...
        raise AvroDecodeError(f"body does not match writer schema {plan.label}: {_describe(exc)}") from exc
    if buffer.tell() != len(payload):
        raise AvroDecodeError(
            f"{len(payload) - buffer.tell()} trailing bytes after the record body (writer schema {plan.label})"
        )
    event: dict[str, Any] = record  # type: ignore[assignment]  # a record schema always reads as a dict
    if plan.fill is not None:
        for name, default in plan.fill:  # appended after the writer's fields, where fastavro's resolution puts them
            event[name] = default
    return event


# Defaults that fastavro's resolution hands over as they are written in the schema (no logical conversion).
_PLAIN_DEFAULTS = (type(None), bool, int, float, str)


def _added_fields(writer: SchemaVersion, reader: SchemaVersion) -> tuple[tuple[str, Any], ...] | None:
    """The reader's fields the writer lacks, with their defaults, when the writer is the reader minus some
    top-level fields with plain defaults and every shared field has the same canonical type; else None
    (fastavro resolves)."""
    writer_fields = {f["name"]: f for f in writer.raw["fields"]}
    if list(writer_fields) != [f["name"] for f in reader.raw["fields"] if f["name"] in writer_fields]:
        return None  # reordered fields: resolution is the simple way to keep the reader's meaning
    fill: list[tuple[str, Any]] = []
    for field in reader.raw["fields"]:
        name = field["name"]
        if name in writer_fields:
            if _canonical_type(writer_fields.pop(name), writer) != _canonical_type(field, reader):
                return None
        elif "default" in field and isinstance(field["default"], _PLAIN_DEFAULTS) and _is_plain(field["type"]):
            fill.append((name, field["default"]))
        else:
            return None
    return tuple(fill) if not writer_fields else None


def _is_plain(avro_type: Any) -> bool:
    """A primitive type (or a union of them) with no logical type: its default needs no conversion."""
    if isinstance(avro_type, list):
        return all(_is_plain(t) for t in avro_type)
    return isinstance(avro_type, str) and avro_type in ("null", "boolean", "int", "long", "float", "double", "string")


def _canonical_type(field: dict[str, Any], owner: SchemaVersion) -> str:
    """A field's type in Parsing Canonical Form, wrapped in a one-field record so named types resolve."""
    record = {
        "type": "record",
        "name": "Field",
        "namespace": owner.full_name.rpartition(".")[0],
        "fields": [{"name": "f", "type": field["type"]}],
    }
    try:
        return str(to_parsing_canonical_form(record))
    except Exception:  # a type named elsewhere in the schema: no shortcut, fastavro resolves the whole record
        return f"<unresolved {id(field)}>"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
