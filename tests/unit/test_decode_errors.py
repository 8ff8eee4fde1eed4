"""What the decoders do with bytes that are not a scorable event: every failure is one ``InvalidEventError``
subclass whose ``reason`` is the dead-letter reason code, and nothing else ever escapes."""

from __future__ import annotations

import contextlib
import random

import pytest

from schemas import EventDecoder, ResultDecoder, SchemaCatalog, SingleObjectEncoder, framing_of, load_catalog
from schemas.errors import AvroDecodeError, FramingError, InvalidEventError, UnknownSchemaError
from tests.unit.test_codec import make_event, make_score_result

NOT_AN_EVENT = r"writer schema crm\.scores\.ScoreResult is not an application event"


@pytest.fixture
def catalog() -> SchemaCatalog:
    return load_catalog()


def test_a_score_result_on_the_input_topic_is_not_an_application_event(catalog: SchemaCatalog) -> None:
    payload = SingleObjectEncoder(catalog.score_result)(make_score_result())

    with pytest.raises(UnknownSchemaError, match=NOT_AN_EVENT):
        EventDecoder(catalog).decode(payload)
    with pytest.raises(UnknownSchemaError, match=r"crm\.events\.ApplicationEvent is not a score result"):
        ResultDecoder(catalog).decode(SingleObjectEncoder(catalog.application_event_latest)(make_event()))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty_value"),
        (None, "empty_value"),
        (b"{", "unknown_framing"),
        (b"\xc3\x02" + b"\x00" * 12, "unknown_framing"),
        (b"\xc3\x01\x47\x4e", "unknown_framing"),  # header cut inside the fingerprint
        (b"\x00\x00\x01", "unknown_framing"),  # Confluent header cut inside the id
    ],
)
def test_values_outside_our_framings_raise_framing_error(
    catalog: SchemaCatalog, payload: bytes | None, reason: str
) -> None:
    with pytest.raises(FramingError) as info:
        EventDecoder(catalog).decode(payload)
    assert info.value.reason == reason


def test_unknown_fingerprint_raises_unknown_schema(catalog: SchemaCatalog) -> None:
    with pytest.raises(UnknownSchemaError, match="0102030405060708") as info:
        EventDecoder(catalog).decode(b"\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08\x00")
    assert info.value.reason == "unknown_schema"


def test_every_truncation_of_the_body_raises_avro_decode_error(catalog: SchemaCatalog) -> None:
    payload = SingleObjectEncoder(catalog.application_event_latest)(make_event())
    decoder = EventDecoder(catalog)

    assert len(payload) > 10  # a body to cut after the 10-byte single-object header
    for end in range(10, len(payload)):
        with pytest.raises(AvroDecodeError, match=r"application_event\.v2") as info:
            decoder.decode(payload[:end])
        assert info.value.reason == "avro_decode_error"
        assert info.value.__cause__ is not None


def test_trailing_bytes_after_the_body_raise_avro_decode_error(catalog: SchemaCatalog) -> None:
    payload = SingleObjectEncoder(catalog.application_event_latest)(make_event())

    with pytest.raises(AvroDecodeError, match="2 trailing bytes"):
        EventDecoder(catalog).decode(payload + b"\x00\x00")


def test_random_bytes_only_ever_raise_invalid_event_errors(catalog: SchemaCatalog) -> None:
    rng = random.Random(20260301)
    header = b"\xc3\x01" + catalog.application_event_latest.fingerprint
    decoder = EventDecoder(catalog)

    for _ in range(2000):
        body = rng.randbytes(rng.randrange(0, 120))
        for payload in (body, header + body):
            with contextlib.suppress(InvalidEventError):
                decoder.decode(payload)


def test_framing_of_names_the_framing() -> None:
    assert framing_of(b"\xc3\x01" + b"\x00" * 8) == "single-object"
    assert framing_of(b"\x00\x00\x00\x00\x07") == "confluent"
    with pytest.raises(FramingError):
        framing_of(b"\x7b")


def test_decode_batch_captures_each_bad_message_and_keeps_order(catalog: SchemaCatalog) -> None:
    good = SingleObjectEncoder(catalog.application_event_latest)(make_event())
    payloads = [good, b"", b"garbage", good[:-3], good]

    records, errors = EventDecoder(catalog).decode_batch(payloads)

    assert [r is not None for r in records] == [True, False, False, False, True]
    assert [e.reason if e else None for e in errors] == [
        None,
        "empty_value",
        "unknown_framing",
        "avro_decode_error",
        None,
    ]
    assert records[4] == make_event()
