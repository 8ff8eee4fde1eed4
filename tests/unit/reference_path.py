"""The straightforward path the fast one is held to: decode with fastavro, hash field by field, score row by row
with the libraries' own calls, build each result as a dict and encode it with fastavro (``test_fast_paths.py``
asserts the engine writes the same bytes)."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import re
from io import BytesIO
from typing import Any

import numpy as np
from fastavro import schemaless_reader

from consumer.core.dedup import ACTIVITY_FIELDS, APPLICANT_FIELDS, RecentScores
from consumer.core.engine import ScoringEngine
from consumer.core.offers import OfferBook
from consumer.core.validation import check_event
from models.artifacts import ModelSet
from models.features import FeatureFrame, build_features
from models.reasons import LANGUAGES, reason_name, shipped_reason_codes
from schemas import EventDecoder, SingleObjectEncoder, load_catalog
from schemas.errors import InvalidEventError

CATALOG = load_catalog()
READER = CATALOG.application_event_latest
RESULT_ENCODER = SingleObjectEncoder(CATALOG.score_result)
CONFIG_HASH = "0123456789ab"
CLOCK = 1_790_000_000.123456
EVENTS = 10_000
SERVICE_DECODER = EventDecoder(CATALOG)


def reference_decode(payload: bytes | None) -> dict[str, Any]:
    """Full fastavro resolution of every writer, through the decoder's own framing checks."""
    record = SERVICE_DECODER.decode(payload)  # framing, errors and trailing-byte checks as the service
    assert payload is not None
    writer = CATALOG.by_fingerprint(payload[2:10])
    assert writer is not None
    resolved = schemaless_reader(BytesIO(payload[10:]), writer.parsed, READER.parsed)
    assert repr(resolved) == repr(record)  # repr: NaN (a poison kind) equals itself there
    return resolved  # type: ignore[return-value]


def reference_hash(event: dict[str, Any]) -> str:
    applicant, activity = event["applicant"], event["activity"]
    content = (
        tuple(applicant.get(f) for f in APPLICANT_FIELDS),
        tuple(activity.get(f) for f in ACTIVITY_FIELDS),
        event["occurred_at"].date(),
    )
    return hashlib.blake2b(repr(content).encode(), digest_size=16).hexdigest()


def reference_scores(
    models: ModelSet,
    events: list[dict[str, Any]],
    top_k: int,
    book: OfferBook | None = None,
    languages: tuple[str, ...] = LANGUAGES,
) -> list[dict[str, Any]]:
    """Features one event at a time; each model once over the stacked rows; every bank's reasons and the
    lead's picked row by row in Python; offers ranked row by row with ``sorted``."""
    book = book if book is not None else OfferBook([b.name for b in models.banks], {})
    frame = FeatureFrame(np.vstack([build_features([e]).matrix for e in events]))
    bank_p = np.column_stack([b.probability(frame.columns(b.features)) for b in models.banks])
    lead_x = frame.columns(models.lead.features).astype(np.float64)
    lead_p = models.lead.probability(lead_x)
    xs = [frame.columns(b.features) for b in models.banks]
    contribs = [b.explain(b.leaves(x))[1] for b, x in zip(models.banks, xs, strict=True)]
    lead_contribs = models.lead.params.contributions(lead_x)
    out = []
    for row in range(len(events)):
        p, lead = bank_p[row].tolist(), float(lead_p[row])
        approved = [p[j] >= b.threshold for j, b in enumerate(models.banks)]
        bank_reasons = [
            _reference_reasons(b.features, xs[j][row], contribs[j][row], approved[j], top_k, languages)
            for j, b in enumerate(models.banks)
        ]
        lead_reasons = _reference_reasons(
            models.lead.features, lead_x[row], lead_contribs[row], lead >= models.lead.threshold, top_k, languages
        )
        offers = _reference_offers(book, frame, row, p, approved)
        explained = (
            models.banks.index(next(b for b in models.banks if b.name == offers[0]["bank"]))
            if offers
            else (int(np.argmax(bank_p[row])))
        )
        out.append(
            {
                "lead": _reference_lead(models, lead, lead_reasons),
                "banks": _reference_banks(models, p, approved, bank_reasons),
                "best_offer": offers[0]["bank"] if offers else None,
                "offers": offers,
                "reasons": bank_reasons[explained],
            }
        )
    return out


def _reference_lead(models: ModelSet, probability: float, reasons: list[dict[str, Any]]) -> dict[str, Any]:
    """The lead's entry of a result."""
    score = round(1000 * probability)
    return {"score": score, "probability": probability, "model_version": models.lead.version, "reasons": reasons}


def _reference_banks(
    models: ModelSet, p: list[float], approved: list[bool], reasons: list[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Every bank's entry of a result, in the model set's order."""
    return [
        {
            "bank": b.name,
            "probability": p[j],
            "approved": approved[j],
            "model_version": b.version,
            "reasons": reasons[j],
        }
        for j, b in enumerate(models.banks)
    ]


def _reference_reasons(
    features: tuple[str, ...],
    x: np.ndarray,
    contributions: np.ndarray,
    up: bool,
    top_k: int,
    languages: tuple[str, ...] = LANGUAGES,
) -> list[dict[str, Any]]:
    """Contributions summed per reason name, the ``top_k`` strongest of the decision's sign, with their codes."""
    table = shipped_reason_codes()
    by_name: dict[str, float] = {}
    missing: dict[str, bool] = {}
    for feature, name, value, c in zip(features, _names(features), x.tolist(), contributions.tolist(), strict=True):
        by_name[name] = by_name.get(name, 0.0) + c
        if feature == name:
            missing[name] = math.isnan(value)
        elif feature == f"{name}_unknown":
            missing[name] = value == 1
    sign = 1.0 if up else -1.0
    ranked = sorted(((-sign * v, i, n) for i, (n, v) in enumerate(by_name.items())), key=lambda t: (t[0], t[1]))
    reasons = []
    for negative, _, name in ranked[:top_k]:
        if negative >= 0:
            break
        kind = "missing" if missing.get(name, False) else ("up" if up else "down")
        statement = table[name].statement(kind)
        value = float(np.float32(by_name[name]))
        reasons.append(
            {
                "feature": name,
                "contribution": value,
                "code": statement.code,
                "statement": {lang: getattr(statement, lang) for lang in languages},
            }
        )
    return reasons


@functools.cache
def _names(features: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(reason_name(f) for f in features)


def _reference_offers(
    book: OfferBook, frame: FeatureFrame, row: int, p: list[float], approved: list[bool]
) -> list[dict[str, Any]]:
    amount, term = float(frame.column("loan_amount")[row]), float(frame.column("loan_term")[row])
    offers = []
    for position, product in enumerate(book.products):
        if not approved[product.bank]:
            continue
        payment = None
        if product.annual_rate is not None:
            if not (product.amount[0] <= amount <= product.amount[1] and product.term[0] <= term <= product.term[1]):
                continue
            r = product.annual_rate / 12
            exact = amount * r / (1 - (1 + r) ** -term) if r > 0 else amount / term
            payment = float(np.rint(exact * 100) / 100)  # to the kopeck, as rint(100 x) / 100
        offers.append((product, position, payment))
    if book.policy == "customer_cost":
        offers.sort(key=lambda o: (o[2] is None, o[2] or 0.0, -p[o[0].bank], o[1]))
    else:
        offers.sort(key=lambda o: (-p[o[0].bank], o[2] is None, o[2] or 0.0, o[1]))
    return [
        {
            "bank": book.banks[o[0].bank],
            "product": o[0].name,
            "approval_probability": p[o[0].bank],
            "annual_rate": o[0].annual_rate,
            "monthly_payment": o[2],
            "rank": rank,
        }
        for rank, o in enumerate(offers, start=1)
    ]


def reference_value(event: dict[str, Any], scores: dict[str, Any]) -> bytes:
    record = {
        "event_id": str(event["event_id"]),
        "application_id": event["application_id"],
        "lead_id": event["lead_id"],
        "application_hash": reference_hash(event),
        "event_time": event["occurred_at"],
        "scored_at": dt.datetime.fromtimestamp(CLOCK, dt.UTC),
        **scores,
        "config_hash": CONFIG_HASH,
    }
    return RESULT_ENCODER(record)


def fast_engine(
    models: ModelSet, top_k: int = 3, book: OfferBook | None = None, languages: tuple[str, ...] = LANGUAGES
) -> ScoringEngine:
    return ScoringEngine(
        models,
        EventDecoder(CATALOG),
        RESULT_ENCODER.header,
        config_hash=CONFIG_HASH,
        reasons=top_k,
        recent=RecentScores(100_000),
        clock=lambda: CLOCK,
        offers=book,
        statement_languages=languages,
    )


def reference_events(payloads: list[bytes | None]) -> tuple[dict[int, dict[str, Any]], dict[int, tuple[str, str]]]:
    """The valid events by message index, and each invalid message's (reason, error text)."""
    events: dict[int, dict[str, Any]] = {}
    rejected: dict[int, tuple[str, str]] = {}
    for index, payload in enumerate(payloads):
        try:
            event = reference_decode(payload)
            check_event(event)
        except InvalidEventError as exc:
            rejected[index] = (exc.reason, scrubbed(exc))
            continue
        events[index] = event
    return events, rejected


def reference_values(
    models: ModelSet,
    events: dict[int, dict[str, Any]],
    top_k: int = 3,
    book: OfferBook | None = None,
    languages: tuple[str, ...] = LANGUAGES,
) -> dict[int, bytes]:
    """The result bytes of every event by message index, the straightforward way."""
    scores = reference_scores(models, list(events.values()), top_k, book, languages)
    return {index: reference_value(event, s) for (index, event), s in zip(events.items(), scores, strict=True)}


def scrubbed(error: Exception) -> str:
    """The error text without object addresses (fastavro names its buffer in some messages)."""
    return re.sub(r" at 0x[0-9a-f]+", "", str(error))
