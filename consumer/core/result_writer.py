"""Score results written straight to Avro bytes, column-wise, for the one result schema the engine emits.

fastavro walks the schema for every record (~15 us for a result with five banks); most of a result is
constant for a worker (bank names, model versions, the config hash) and the rest is a few numbers. This
writer lays the constant bytes down once and packs only what varies: a batch's probabilities go through one
numpy structured array. It is the only producer of results: it writes the layout of one schema,
``result_schema()`` (``score_result.v1``), the schema the service frames and registers its results with.
``tests/unit/test_fast_paths.py`` checks it writes the same bytes as fastavro, the oracle.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from consumer.core.scoring import ScoreColumns
from models.artifacts import ModelSet
from schemas import SchemaVersion, load_catalog

_DOUBLE = struct.Struct("<d")
_ZERO = b"\x00"  # an empty array block ends an array; union branch 0 is null
_RESULT_SCHEMA = "score_result.v1"  # the schema whose layout this module writes


def result_schema() -> SchemaVersion:
    """The score result schema whose layout ``ResultWriter`` writes: frame and register results with it."""
    return load_catalog().get(_RESULT_SCHEMA)


def zigzag_varint(value: int) -> bytes:
    """Avro's ``long``/``int`` encoding: zig-zag, then 7 bits per byte, low bits first."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SHORT_LENGTHS = [zigzag_varint(n) for n in range(64)]  # one-byte length prefixes


def avro_string(text: str) -> bytes:
    data = text.encode()
    size = len(data)
    return (_SHORT_LENGTHS[size] if size < 64 else zigzag_varint(size)) + data


# A lead score is round(1000 * p) for p in [0, 1]: every encoding is precomputed.
_SCORES = [zigzag_varint(n) for n in range(1001)]


class ResultWriter:
    """Writes the score result records of one engine (its banks, models and config hash) as framed bytes.

    ``header`` is the framing of ``result_schema()`` written before every body. Per batch: ``blocks`` encodes
    the part of each result that depends only on its scores (lead, banks, best offer, reasons, config hash);
    ``framed`` prefixes a block with the event's ids, hash and times.
    """

    def __init__(self, header: bytes, models: ModelSet, config_hash: str) -> None:
        self.header = header
        banks = models.banks
        fields: list[tuple[str, Any]] = [("lead_p", "<f8")]
        constants: dict[str, bytes] = {}

        def constant(name: str, value: bytes) -> None:
            fields.append((name, f"S{len(value)}"))
            constants[name] = value

        constant("lead_version", avro_string(models.lead.version))
        constant("bank_count", zigzag_varint(len(banks)))
        for j, bank in enumerate(banks):
            constant(f"name{j}", avro_string(bank.name))
            fields += [(f"p{j}", "<f8"), (f"ok{j}", "u1")]
            constant(f"version{j}", avro_string(bank.version))
        constant("banks_end", _ZERO)
        self._dtype = np.dtype(fields)  # packed: no alignment padding between fields
        self._template = np.zeros(1, self._dtype)
        for name, value in constants.items():
            self._template[name] = value
        self._best = [b"\x02" + avro_string(b.name) for b in banks] + [_ZERO]  # index -1: no offer (null)
        self._features = [[avro_string(f) for f in b.features] for b in banks]
        self._tail = avro_string(config_hash)

    def blocks(self, columns: ScoreColumns) -> list[bytes]:
        """The scores part of each row's result: lead, banks, best offer, reasons and config hash."""
        n = len(columns.lead_p)
        table = np.repeat(self._template, n)
        table["lead_p"] = columns.lead_p
        for j in range(columns.bank_p.shape[1]):
            table[f"p{j}"] = columns.bank_p[:, j]
            table[f"ok{j}"] = columns.approved[:, j]
        fixed = table.tobytes()
        size = self._dtype.itemsize
        k = columns.reason_features.shape[1]
        values = np.ascontiguousarray(columns.reason_values, dtype="<f8").tobytes()
        reason_features = columns.reason_features.tolist()
        # round(1000 * p) is round-half-even of the same double, as np.rint computes it
        scores = np.rint(columns.lead_p * 1000).astype(np.int64).tolist()
        best, explained = columns.best.tolist(), columns.explained.tolist()
        best_bytes, tail, features = self._best, self._tail, self._features
        out = []
        for r in range(n):
            parts = [_SCORES[scores[r]], fixed[r * size : (r + 1) * size], best_bytes[best[r]]]
            if k:
                names, at = features[explained[r]], r * k * 8
                chosen = [f for f in reason_features[r] if f >= 0]  # -1 pads a bank with fewer features
                parts.append(_SHORT_LENGTHS[len(chosen)] if chosen else b"")
                for i, f in enumerate(chosen):
                    parts += (names[f], values[at + 8 * i : at + 8 * i + 8])
            parts += (_ZERO, tail)  # the end of the reasons array (or the whole of an empty one)
            out.append(b"".join(parts))
        return out

    def framed(
        self, event_id: str, application_id: str, lead_id: str, app_hash: str, event_ms: int, scored_at: bytes,
        block: bytes,
    ) -> bytes:  # fmt: skip
        """One framed result: ``scored_at`` is the batch's ``zigzag_varint`` of its scoring time in ms."""
        return b"".join(
            (
                self.header,
                avro_string(event_id),
                avro_string(application_id),
                avro_string(lead_id),
                avro_string(app_hash),
                zigzag_varint(event_ms),
                scored_at,
                block,
            )
        )
