"""A catalogue of malformed messages for demos and tests, each with the outcome the scorer must give it.

Every ``PoisonKind`` turns a valid event into one message (key, value) and declares its ``outcome``: the
dead-letter reason code the scorer must send it with (``schemas.errors`` classes' ``reason``, and the checks
of a decoded event: ``missing_id``, ``invalid_field``), or ``"scored"`` when the scorer must score it anyway,
with the soft ``anomalies`` (feature, kind) the feature pipeline counts. Builders are pure: the same event,
encoder and seeded ``random.Random`` give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas import SingleObjectEncoder, load_catalog
from schemas.framing import SINGLE_OBJECT_MAGIC, confluent_header

SCORED = "scored"
Encoder = Callable[[Mapping[str, Any]], bytes]
Builder = Callable[[dict[str, Any], Encoder, random.Random], tuple[bytes | None, bytes]]

# Just under librdkafka's default message.max.bytes (1,000,000): a larger value would fail at the
# producer, not test the scorer.
HUGE_STRING_CHARS = 900_000
# Far above any id a registry hands out, so it is unknown to every registry we talk to.
UNKNOWN_REGISTRY_ID_BASE = 2_000_000_000


@dataclass(frozen=True)
class PoisonMessage:
    """One malformed message. ``event_id`` is set when the scorer can read the event inside (outcome scored)."""

    kind: str
    key: bytes | None
    value: bytes
    event_id: str | None


@dataclass(frozen=True)
class PoisonKind:
    """A kind of malformed message and what the scorer must do with it."""

    name: str
    outcome: str  # a dead-letter reason code, or SCORED
    description: str
    build: Builder
    anomalies: tuple[tuple[str, str], ...] = ()  # (feature, kind) counted when scored

    @property
    def scored(self) -> bool:
        return self.outcome == SCORED

    def make(self, event: Mapping[str, Any], encode: Encoder, rng: random.Random) -> PoisonMessage:
        """The poison message made from the valid ``event``, framed by ``encode`` where it is valid Avro."""
        key, value = self.build(dict(event), encode, rng)
        event_id = str(event["event_id"]) if self.scored else None
        return PoisonMessage(self.name, key, value, event_id)


def _key(event: Mapping[str, Any]) -> bytes:
    return str(event["application_id"]).encode("utf-8")


def _with_applicant(event: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**event, "applicant": {**event["applicant"], **fields}}


def _random_bytes(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    body = rng.randbytes(rng.randint(8, 64))
    # The first byte must name neither framing: not 0x00 (Confluent) and not 0xC3 (single-object).
    first = rng.choice([b for b in range(1, 256) if b != SINGLE_OBJECT_MAGIC[0]])
    return _key(event), bytes((first,)) + body


def _empty_value(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    return _key(event), b""


def _truncated_avro(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    value = encode(event)
    header = len(value) - len(_body(value))
    # A prefix of a valid body is read down the same path as the whole body, so it always runs out of bytes.
    return _key(event), value[: rng.randint(header + 1, len(value) - 1)]


def _trailing_bytes(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    return _key(event), encode(event) + rng.randbytes(rng.randint(1, 16))


def _wrong_magic(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    body = _body(encode(event))
    return _key(event), SINGLE_OBJECT_MAGIC[:1] + bytes((rng.choice([0x00, 0x02, 0xFF]),)) + bytes(8) + body


def _unknown_fingerprint(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    body = _body(encode(event))
    return _key(event), SINGLE_OBJECT_MAGIC + rng.randbytes(8) + body


def _unknown_registry_id(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    body = _body(encode(event))
    return _key(event), confluent_header(UNKNOWN_REGISTRY_ID_BASE + rng.randrange(1_000_000)) + body


def _other_schema(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    # A shipped schema of another record type: the decoder finds its fingerprint, then refuses the type.
    result = {
        "event_id": str(event["event_id"]),
        "application_id": str(event["application_id"]),
        "lead_id": str(event["lead_id"]),
        "application_hash": "0" * 16,
        "event_time": event["occurred_at"],
        "scored_at": event["occurred_at"],
        "lead": {"score": 500, "probability": 0.5, "model_version": "poison"},
        "banks": [{"bank": "bank_a", "probability": 0.5, "approved": False, "model_version": "poison"}],
        "best_offer": None,
        "reasons": [],
        "config_hash": "poison",
    }
    return _key(event), SingleObjectEncoder(load_catalog().score_result)(result)


def _missing_ids(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    return b"", encode({**event, "application_id": ""})


def _unsafe_id(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    unsafe = rng.choice(["app with spaces", "app-1\nforged log line", "a" * 200])
    return unsafe.encode("utf-8"), encode({**event, "application_id": unsafe})


def _nan_and_infinities(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    return _key(event), encode(_with_applicant(event, monthprofit=math.nan, loan_amount=math.inf))


def _absurd_dates(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    dates = {"birthdate": dt.date(1800, 1, 1), "jobstartdate": dt.date(2090, 6, 1)}
    return _key(event), encode(_with_applicant(event, **dates))


def _ancient_event_time(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    return _key(event), encode({**event, "occurred_at": dt.datetime(1971, 1, 1, tzinfo=dt.UTC)})


def _huge_string(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    return _key(event), encode(_with_applicant(event, position="x" * HUGE_STRING_CHARS))


def _unknown_category(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    return _key(event), encode(_with_applicant(event, goods_category="Crypto"))


def _null_key(event: dict[str, Any], encode: Encoder, rng: random.Random) -> tuple[bytes | None, bytes]:
    return None, encode(event)


def _body(value: bytes) -> bytes:
    """The Avro body of a framed value (after its single-object or Confluent header)."""
    return value[10:] if value[:2] == SINGLE_OBJECT_MAGIC else value[5:]


_KINDS = (
    PoisonKind("random_bytes", "unknown_framing", "random bytes naming no framing", _random_bytes),
    PoisonKind("empty_value", "empty_value", "a zero-length value", _empty_value),
    PoisonKind("truncated_avro", "avro_decode_error", "a valid message cut short", _truncated_avro),
    PoisonKind("trailing_bytes", "avro_decode_error", "a valid message with bytes after the body", _trailing_bytes),
    PoisonKind("wrong_magic", "unknown_framing", "0xC3 followed by a wrong second magic byte", _wrong_magic),
    PoisonKind("unknown_fingerprint", "unknown_schema", "0xC3 0x01, fingerprint of no schema", _unknown_fingerprint),
    PoisonKind("unknown_registry_id", "unknown_schema", "0x00, a registry id nobody has", _unknown_registry_id),
    PoisonKind("other_schema", "unknown_schema", "a valid ScoreResult sent to the input topic", _other_schema),
    PoisonKind("missing_ids", "missing_id", "valid Avro, application_id empty", _missing_ids),
    PoisonKind("unsafe_id", "invalid_field", "application_id with spaces, a newline or 200 characters", _unsafe_id),
    PoisonKind("ancient_event_time", "invalid_field", "occurred_at in 1971, outside 2000..2100", _ancient_event_time),
    PoisonKind(
        "nan_and_infinities",
        SCORED,
        "monthprofit NaN (missing), loan_amount +inf",
        _nan_and_infinities,
        anomalies=(("loan_amount", "out_of_range"),),
    ),
    PoisonKind(
        "absurd_dates",
        SCORED,
        "birthdate in 1800, job start in 2090",
        _absurd_dates,
        anomalies=(("age_years", "out_of_range"), ("job_tenure_years", "out_of_range")),
    ),
    PoisonKind("huge_string", SCORED, f"a {HUGE_STRING_CHARS:,}-character position", _huge_string),
    PoisonKind(
        "unknown_category",
        SCORED,
        "goods_category 'Crypto'",
        _unknown_category,
        anomalies=(("goods_category", "unknown_category"),),
    ),
    PoisonKind("null_key", SCORED, "a valid event with no message key", _null_key),
)
CATALOGUE: dict[str, PoisonKind] = {kind.name: kind for kind in _KINDS}
DEAD_LETTER_REASONS = frozenset(kind.outcome for kind in _KINDS if not kind.scored)


def poison_kinds(names: str | None = None) -> tuple[PoisonKind, ...]:
    """The kinds named in the comma-separated ``names`` (all of them when None or empty).

    Raises:
        KeyError: a name is not in the catalogue; the message lists the known names.
    """
    if not names:
        return _KINDS
    unknown = [n for n in (s.strip() for s in names.split(",")) if n and n not in CATALOGUE]
    if unknown:
        raise KeyError(f"unknown poison kinds {unknown}; known: {sorted(CATALOGUE)}")
    return tuple(CATALOGUE[n.strip()] for n in names.split(",") if n.strip())
