"""What the in-memory broker stores: records, and the transactions they were produced in."""

from __future__ import annotations

from dataclasses import dataclass, field

from consumer.kafka.clients import Headers

TP = tuple[str, int]


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    transaction: int | None = None  # the id of the transaction it was produced in; None: not transactional


@dataclass
class Transaction:
    id: int
    records: list[tuple[TP, int]] = field(default_factory=list)  # where each record of it landed
    offsets: dict[TP, int] = field(default_factory=dict)
