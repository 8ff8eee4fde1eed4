"""Score results written straight to Avro bytes, column-wise, for the one result schema the engine emits.

fastavro walks the schema for every record (~15 us for a result with five banks, far more with every bank's
reasons); most of a result is constant for a worker (bank names, model versions, reason codes and statements,
products, the config hash) and the rest is a few numbers. This writer lays the constant bytes down once and
packs only what varies: a batch's numbers go through numpy once, and a reason is its feature's bytes, its
contribution's eight bytes and the bytes of its code and statements, all chosen by index. It is the only
producer of results: it writes the layout of one schema, ``result_schema()`` (``score_result.v2``), the schema
the service frames and registers its results with. ``tests/unit/test_fast_paths.py`` checks it writes the same
bytes as fastavro, the oracle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from consumer.core.offers import OfferBook
from consumer.core.scoring import Reasons, ScoreColumns
from models.artifacts import ModelSet
from models.reasons import KINDS, LANGUAGES, FeatureReasons, reason_inputs, shipped_reason_codes
from schemas import SchemaVersion, load_catalog

_ZERO = b"\x00"  # an empty array block ends an array; union branch 0 is null
_NULL, _SECOND = b"\x00", b"\x02"  # union branches 0 and 1
_TRUE, _FALSE = b"\x01", b"\x00"
_RESULT_SCHEMA = "score_result.v2"  # the schema whose layout this module writes


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


_SHORT_LENGTHS = [zigzag_varint(n) for n in range(64)]  # one-byte length prefixes and small counts


def avro_string(text: str) -> bytes:
    data = text.encode()
    size = len(data)
    return (_SHORT_LENGTHS[size] if size < 64 else zigzag_varint(size)) + data


# A lead score is round(1000 * p) for p in [0, 1]: every encoding is precomputed.
_SCORES = [zigzag_varint(n) for n in range(1001)]


def _statement_bytes(entry: FeatureReasons) -> list[bytes]:
    """Per kind (down, up, missing): the reason's ``code`` and ``statement`` map, encoded."""
    out = []
    for kind in KINDS:
        statement = entry.statement(kind)
        texts = statement.model_dump()
        body = b"".join(avro_string(lang) + avro_string(texts[lang]) for lang in LANGUAGES)
        out.append(avro_string(statement.code) + zigzag_varint(len(LANGUAGES)) + body + _ZERO)
    return out


class _ReasonBytes:
    """The constant bytes of one model's reasons: per reason name, its feature and its code per kind."""

    def __init__(self, names: Sequence[str], table: Mapping[str, FeatureReasons]) -> None:
        self.feature = [avro_string(n) for n in names]
        self.codes = [_statement_bytes(table[n]) for n in names]

    def blocks(self, reasons: Reasons) -> list[bytes]:
        """Each row's encoded reasons array."""
        n, k = reasons.feature.shape
        if k == 0:
            return [_ZERO] * n
        values = np.ascontiguousarray(reasons.value, dtype="<f8").tobytes()
        kinds = np.where(reasons.missing, 2, reasons.up[:, None].astype(np.intp)).tolist()
        features, feature_bytes, codes = reasons.feature.tolist(), self.feature, self.codes
        out = []
        for r in range(n):
            chosen = [(i, f) for i, f in enumerate(features[r]) if f >= 0]
            if not chosen:
                out.append(_ZERO)
                continue
            parts = [_SHORT_LENGTHS[len(chosen)]]
            at, row_kinds = r * k * 8, kinds[r]
            for i, f in chosen:
                parts += (feature_bytes[f], values[at + 8 * i : at + 8 * i + 8], codes[f][row_kinds[i]])
            parts.append(_ZERO)
            out.append(b"".join(parts))
        return out


class ResultWriter:
    """Writes the score result records of one engine (its banks, models, products and config hash) as framed bytes.

    ``header`` is the framing of ``result_schema()`` written before every body. Per batch: ``blocks`` encodes
    the part of each result that depends only on its scores (lead, banks, best offer, offers, reasons, config
    hash); ``framed`` prefixes a block with the event's ids, hash and times.
    """

    def __init__(
        self,
        header: bytes,
        models: ModelSet,
        config_hash: str,
        book: OfferBook | None = None,
        reason_codes: Mapping[str, FeatureReasons] | None = None,
    ) -> None:
        self.header = header
        table = reason_codes if reason_codes is not None else shipped_reason_codes()
        banks = models.banks
        self._book = book if book is not None else OfferBook([b.name for b in banks], {})
        self._lead_version = avro_string(models.lead.version)
        self._lead_reasons = _ReasonBytes(reason_inputs(models.lead.features).names, table)
        self._bank_count = zigzag_varint(len(banks))
        self._bank_names = [avro_string(b.name) for b in banks]
        self._bank_versions = [avro_string(b.version) for b in banks]
        self._bank_reasons = [_ReasonBytes(reason_inputs(b.features).names, table) for b in banks]
        self._best = [_SECOND + avro_string(b.name) for b in banks] + [_NULL]  # index -1: no offer (null)
        self._offer_heads = [
            self._bank_names[p.bank] + (_NULL if p.name is None else _SECOND + avro_string(p.name))
            for p in self._book.products
        ]
        self._offer_rates = [
            _NULL if p.annual_rate is None else _SECOND + np.array(p.annual_rate, "<f8").tobytes()
            for p in self._book.products
        ]
        self._ranks = [zigzag_varint(rank) for rank in range(1, len(self._book.products) + 1)]
        self._tail = avro_string(config_hash)

    def blocks(self, columns: ScoreColumns) -> list[bytes]:
        """The scores part of each row's result: lead, banks, best offer, offers, reasons and config hash."""
        n = len(columns.lead_p)
        lead_p = np.ascontiguousarray(columns.lead_p, dtype="<f8").tobytes()
        bank_p = np.ascontiguousarray(columns.bank_p, dtype="<f8").tobytes()
        approved = columns.approved.tolist()
        # round(1000 * p) is round-half-even of the same double, as np.rint computes it
        scores = np.rint(columns.lead_p * 1000).astype(np.int64).tolist()
        lead_reasons = self._lead_reasons.blocks(columns.lead_reasons)
        bank_reasons = [w.blocks(r) for w, r in zip(self._bank_reasons, columns.bank_reasons, strict=True)]
        offers = self._offers(columns)
        best, explained = columns.best.tolist(), columns.explained.tolist()
        names, versions, width = self._bank_names, self._bank_versions, len(self._bank_names)
        out = []
        for r in range(n):
            parts = [
                _SCORES[scores[r]],
                lead_p[8 * r : 8 * r + 8],
                self._lead_version,
                lead_reasons[r],
                self._bank_count,
            ]
            ok, at = approved[r], 8 * width * r
            for j in range(width):
                parts += (names[j], bank_p[at + 8 * j : at + 8 * j + 8], _TRUE if ok[j] else _FALSE, versions[j],
                          bank_reasons[j][r])  # fmt: skip
            parts += (_ZERO, self._best[best[r]], offers[r], bank_reasons[explained[r]][r], self._tail)
            out.append(b"".join(parts))
        return out

    def _offers(self, columns: ScoreColumns) -> list[bytes]:
        """Each row's encoded offers array."""
        offers, products = columns.offers, self._book.products
        probability = columns.bank_p[:, [p.bank for p in products]]
        count, order = offers.count.tolist(), offers.order.tolist()
        prob_bytes = np.ascontiguousarray(probability, dtype="<f8").tobytes()
        payment_bytes = np.ascontiguousarray(offers.payment, dtype="<f8").tobytes()
        priced = [p.annual_rate is not None for p in products]
        heads, rates, ranks, width = self._offer_heads, self._offer_rates, self._ranks, len(products)
        out = []
        for r in range(len(count)):
            if not count[r]:
                out.append(_ZERO)
                continue
            parts = [_SHORT_LENGTHS[count[r]] if count[r] < 64 else zigzag_varint(count[r])]
            at = 8 * width * r
            for rank, p in enumerate(order[r][: count[r]]):
                at_p = at + 8 * p
                payment = _SECOND + payment_bytes[at_p : at_p + 8] if priced[p] else _NULL
                parts += (heads[p], prob_bytes[at_p : at_p + 8], rates[p], payment, ranks[rank])
            parts.append(_ZERO)
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
