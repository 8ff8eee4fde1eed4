"""Score results written straight to Avro bytes, column-wise, for the one result schema the engine emits.

fastavro walks the schema for every record (~15 us for a result with five banks, far more with every bank's
reasons); most of a result is constant for a worker (bank names, model versions, reason codes and statements,
products, the config hash) and the rest is a few numbers. This writer encodes the constant parts once and
picks them by index: a reason is its feature's bytes, its contribution's eight bytes and the bytes of its code
and statements. It is the only
producer of results: it writes the layout of one schema, ``result_schema()`` (``score_result.v2``), the schema
the service frames and registers its results with. ``tests/unit/test_fast_paths.py`` checks it writes the same
bytes as fastavro, the oracle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from consumer.core.offers import OfferBook, OfferColumns
from consumer.core.scoring import Reasons, ScoreColumns
from models.artifacts import ModelSet
from models.reasons import KINDS, LANGUAGES, MAX_REASONS, FeatureReasons, reason_inputs, shipped_reason_codes
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


def _statement_bytes(entry: FeatureReasons, languages: Sequence[str]) -> list[bytes]:
    """Per kind (down, up, missing): the reason's ``code`` and its ``statement`` map in ``languages`` (an empty
    map when there are none), encoded."""
    out = []
    for kind in KINDS:
        statement = entry.statement(kind)
        texts = statement.model_dump()
        body = b"".join(avro_string(lang) + avro_string(texts[lang]) for lang in languages)
        block = zigzag_varint(len(languages)) + body if languages else b""  # an empty map is its end marker alone
        out.append(avro_string(statement.code) + block + _ZERO)
    return out


def _table(values: Sequence[bytes]) -> np.ndarray:
    """An object array of ``values`` plus an empty part at index -1 (what an absent reason or offer writes)."""
    out = np.empty(len(values) + 1, dtype=object)
    out[:-1] = list(values)
    out[-1] = b""
    return out


def _packed_scores(banks: int, products: int) -> np.dtype:
    """One row's scores as a fixed-size record, as ``pack`` / ``unpack`` keep them in the cache of recent
    applications: every bank's and the lead's reasons, the ranked offers and their payments."""
    explained = banks + 1  # every bank and the lead
    return np.dtype(
        [
            ("bank_p", "<f8", (banks,)),
            ("approved", "?", (banks,)),
            ("lead_p", "<f8"),
            ("best", "<i2"),
            ("explained", "<i2"),
            ("feature", "<i2", (explained, MAX_REASONS)),
            ("value", "<f4", (explained, MAX_REASONS)),
            ("missing", "?", (explained, MAX_REASONS)),
            ("up", "?", (explained,)),
            ("order", "<i2", (products,)),
            ("count", "<i2"),
            ("payment", "<f8", (products,)),
        ]
    )


def _counts(limit: int) -> np.ndarray:
    """An array's block count for 0..limit items; nothing for 0 (the array is then its end marker alone)."""
    return _table([b""] + [zigzag_varint(c) for c in range(1, limit + 1)])[:-1]


def _doubles(values: np.ndarray) -> np.ndarray:
    """Each value's 8 little-endian bytes, as an object array of the same shape."""
    return np.ascontiguousarray(values, dtype="<f8").view("V8").astype(object)


def _constant(rows: int, value: bytes) -> np.ndarray:
    out = np.empty((rows, 1), dtype=object)
    out[:] = value  # not np.full: it passes bytes through a fixed-width string and drops trailing NULs
    return out


class _ReasonParts:
    """The constant parts of one model's reasons: per reason name its feature, per name and kind its code."""

    def __init__(self, names: Sequence[str], table: Mapping[str, FeatureReasons], languages: Sequence[str]) -> None:
        self.feature = _table([avro_string(n) for n in names])
        self.code = _table([code for n in names for code in _statement_bytes(table[n], languages)])
        self.count = _counts(MAX_REASONS)

    def parts(self, reasons: Reasons, k: int) -> np.ndarray:
        """(rows, 2 + 3k): count, then feature, contribution, code per reason (absent ones, and those a model
        with fewer than ``k`` features lacks, empty), then the end."""
        rows, given = reasons.feature.shape
        feature = np.full((rows, k), -1, dtype=np.intp)
        feature[:, :given] = reasons.feature
        present = feature >= 0  # a prefix of each row: reasons come strongest first
        kind = np.zeros((rows, k), dtype=np.intp)
        kind[:, :given] = np.where(reasons.missing, 2, reasons.up[:, None].astype(np.intp))
        values = np.zeros((rows, k))
        values[:, :given] = reasons.value
        out = np.empty((rows, 2 + 3 * k), dtype=object)
        out[:, 0] = self.count[present.sum(axis=1)]
        out[:, 1:-1:3] = self.feature[feature]
        out[:, 2:-1:3] = np.where(present, _doubles(values), b"")
        out[:, 3:-1:3] = self.code[np.where(present, feature * len(KINDS) + kind, -1)]
        out[:, -1] = _ZERO
        return out


class ResultWriter:
    """Writes the score result records of one engine (its banks, models, products and config hash) as framed bytes.

    ``header`` is the framing of ``result_schema()`` written before every body. Per batch: ``blocks`` encodes
    the part of each result that depends only on its scores (lead, banks, best offer, offers, reasons, config
    hash); ``framed`` prefixes a block with the event's ids, hash and times. A batch's parts are laid out as
    one object array (a row per result, a column per part, picked from tables of constant bytes by index, the
    numbers' bytes straight from numpy) and each row is one ``bytes.join``: no Python loop per part.
    """

    def __init__(
        self,
        header: bytes,
        models: ModelSet,
        config_hash: str,
        book: OfferBook | None = None,
        reason_codes: Mapping[str, FeatureReasons] | None = None,
        statement_languages: Sequence[str] = (),
    ) -> None:
        self.header = header
        table = reason_codes if reason_codes is not None else shipped_reason_codes()
        banks = models.banks
        book = book if book is not None else OfferBook([b.name for b in banks], {})
        products = book.products
        self._scores = _table(_SCORES)
        self._lead_version = avro_string(models.lead.version)
        languages = tuple(statement_languages)
        unknown = [lang for lang in languages if lang not in LANGUAGES]
        if unknown:
            raise ValueError(f"statement languages {', '.join(unknown)}: the reason codes have {', '.join(LANGUAGES)}")
        self._lead_reasons = _ReasonParts(reason_inputs(models.lead.features).names, table, languages)
        self._bank_count = zigzag_varint(len(banks))
        self._bank_names = [avro_string(b.name) for b in banks]
        self._decisions = [_table([_FALSE + avro_string(b.version), _TRUE + avro_string(b.version)]) for b in banks]
        self._bank_reasons = [_ReasonParts(reason_inputs(b.features).names, table, languages) for b in banks]
        self._best = _table([_SECOND + avro_string(b.name) for b in banks] + [_NULL])[:-1]  # -1: no offer (null)
        self._offer_bank = np.array([p.bank for p in products], dtype=np.intp)
        self._priced = np.array([p.annual_rate is not None for p in products])
        self._offer_heads = _table(
            [self._bank_names[p.bank] + (_NULL if p.name is None else _SECOND + avro_string(p.name)) for p in products]
        )
        self._offer_rates = _table(
            [_NULL if p.annual_rate is None else _SECOND + np.array(p.annual_rate, "<f8").tobytes() for p in products]
        )
        self._payment_branches = _table([_SECOND if p.annual_rate is not None else _NULL for p in products])
        self._ranks = _table([zigzag_varint(rank) for rank in range(1, len(products) + 1)])
        self._offer_counts = _counts(len(products))
        self._tail = avro_string(config_hash)
        self._packed = _packed_scores(len(banks), len(products))

    def blocks(self, columns: ScoreColumns) -> list[bytes]:
        """The scores part of each row's result: lead, banks, best offer, offers, reasons and config hash."""
        n = len(columns.lead_p)
        # round(1000 * p) is round-half-even of the same double, as np.rint computes it
        scores = np.rint(columns.lead_p * 1000).astype(np.intp)
        bank_p = _doubles(columns.bank_p)
        k = max(r.feature.shape[1] for r in [*columns.bank_reasons, columns.lead_reasons])
        bank_reasons = [w.parts(r, k) for w, r in zip(self._bank_reasons, columns.bank_reasons, strict=True)]
        parts = [
            self._scores[scores][:, None],
            _doubles(columns.lead_p)[:, None],
            _constant(n, self._lead_version),
            self._lead_reasons.parts(columns.lead_reasons, k),
            _constant(n, self._bank_count),
        ]
        for j, name in enumerate(self._bank_names):
            decision = self._decisions[j][columns.approved[:, j].astype(np.intp)]
            parts += [_constant(n, name), bank_p[:, j : j + 1], decision[:, None], bank_reasons[j]]
        parts += [_constant(n, _ZERO), self._best[columns.best][:, None], self._offers(columns)]
        parts += [np.stack(bank_reasons)[columns.explained, np.arange(n)], _constant(n, self._tail)]
        return [b"".join(row) for row in np.concatenate(parts, axis=1).tolist()]

    def _offers(self, columns: ScoreColumns) -> np.ndarray:
        """(rows, 2 + 6 * products): count, then per rank bank and product, probability, rate, payment, rank."""
        offers = columns.offers
        n, width = offers.order.shape
        offered = np.arange(width) < offers.count[:, None]
        chosen = np.where(offered, offers.order, -1)
        probability = np.take_along_axis(columns.bank_p[:, self._offer_bank], offers.order, axis=1)
        payment = np.take_along_axis(offers.payment, offers.order, axis=1)
        out = np.empty((n, 2 + 6 * width), dtype=object)
        out[:, 0] = self._offer_counts[offers.count]
        out[:, 1:-1:6] = self._offer_heads[chosen]
        out[:, 2:-1:6] = np.where(offered, _doubles(probability), b"")
        out[:, 3:-1:6] = self._offer_rates[chosen]
        out[:, 4:-1:6] = self._payment_branches[chosen]
        out[:, 5:-1:6] = np.where(offered & self._priced[offers.order], _doubles(payment), b"")
        out[:, 6:-1:6] = self._ranks[np.where(offered, np.arange(width), -1)]
        out[:, -1] = _ZERO
        return out

    def pack(self, columns: ScoreColumns) -> list[bytes]:
        """Each row's scores as a compact fixed-size record (~260 bytes for five banks), for the cache of recent
        applications: ``blocks(unpack(records))`` writes the very bytes ``blocks(columns)`` does, and a cached
        result no longer holds its reason statements (a result's block is ~3.7 KB, mostly statements)."""
        n = len(columns.lead_p)
        table = np.zeros(n, dtype=self._packed)
        table["bank_p"], table["approved"], table["lead_p"] = columns.bank_p, columns.approved, columns.lead_p
        table["best"], table["explained"] = columns.best, columns.explained
        for i, reasons in enumerate([*columns.bank_reasons, columns.lead_reasons]):
            given = reasons.feature.shape[1]
            table["feature"][:, i] = -1
            table["feature"][:, i, :given] = reasons.feature
            table["value"][:, i, :given] = reasons.value
            table["missing"][:, i, :given] = reasons.missing
            table["up"][:, i] = reasons.up
        table["order"], table["count"], table["payment"] = (
            columns.offers.order,
            columns.offers.count,
            columns.offers.payment,
        )
        raw, size = table.tobytes(), self._packed.itemsize
        return [raw[r * size : (r + 1) * size] for r in range(n)]

    def unpack(self, records: Sequence[bytes], k: int) -> ScoreColumns:
        """The columns ``pack`` packed (``k``: the engine's number of reasons)."""
        table = np.frombuffer(b"".join(records), dtype=self._packed)
        reasons = [
            Reasons(
                table["feature"][:, i, :k].astype(np.intp),
                table["value"][:, i, :k].copy(),
                table["missing"][:, i, :k].copy(),
                table["up"][:, i].copy(),
            )
            for i in range(table["feature"].shape[1])
        ]
        offers = OfferColumns(table["order"].astype(np.intp), table["count"].astype(np.intp), table["payment"].copy())
        return ScoreColumns(
            table["bank_p"].copy(),
            table["approved"].copy(),
            table["lead_p"].copy(),
            table["best"].astype(np.intp),
            table["explained"].astype(np.intp),
            reasons[:-1],
            reasons[-1],
            offers,
        )

    def framed(
        self,
        event_id: str,
        application_id: str,
        lead_id: str,
        app_hash: str,
        event_ms: int,
        scored_at: bytes,
        block: bytes,
    ) -> bytes:
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
