"""The dead-letter contract, shared by the scorer (which writes them) and the tools (tail, replay).

In the style of Kafka Streams' KIP-1034: the dead letter's key and value are the original bytes, untouched;
headers say why and where it came from. Header values are UTF-8 text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

REASON = "dlq.reason"  # machine-readable code: unknown_framing, empty_value, unknown_schema, avro_decode_error, ...
ERROR = "dlq.error"  # human-readable: "<field path>: <message>"
FIELD = "dlq.field"  # dotted field path, when the error is about one field
SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
FAILED_AT = "dlq.failed_at"  # ISO-8601 UTC
# The one reason not raised by the error tree: a scored event whose result the broker refused (too large, invalid).
RESULT_REJECTED = "result_rejected"
ALL_HEADERS = (REASON, ERROR, FIELD, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, FAILED_AT)
MAX_ERROR_CHARS = 1000  # a 1 MB poison string must not make a 1 MB header


@dataclass(frozen=True)
class DeadLetterInfo:
    reason: str
    error: str
    field: str | None
    topic: str
    partition: int
    offset: int
    failed_at: dt.datetime

    def headers(self) -> list[tuple[str, bytes]]:
        """The Kafka headers of this dead letter."""
        items = [
            (REASON, self.reason),
            (ERROR, self.error[:MAX_ERROR_CHARS]),
            (SOURCE_TOPIC, self.topic),
            (SOURCE_PARTITION, str(self.partition)),
            (SOURCE_OFFSET, str(self.offset)),
            (FAILED_AT, self.failed_at.astimezone(dt.UTC).isoformat(timespec="milliseconds")),
        ]
        if self.field:
            items.append((FIELD, self.field[:200]))
        return [(name, value.encode("utf-8")) for name, value in items]

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, bytes | None]] | None) -> DeadLetterInfo:
        """Read the headers back. Raises KeyError when a required header is absent (not a dead letter)."""
        values = {name: (value or b"").decode("utf-8", "replace") for name, value in headers or ()}
        return cls(
            reason=values[REASON],
            error=values.get(ERROR, ""),
            field=values.get(FIELD),
            topic=values[SOURCE_TOPIC],
            partition=int(values[SOURCE_PARTITION]),
            offset=int(values[SOURCE_OFFSET]),
            failed_at=dt.datetime.fromisoformat(values[FAILED_AT]),
        )
