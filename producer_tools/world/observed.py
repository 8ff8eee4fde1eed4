"""The quantities the oracle sees, derived from the observed event fields only (never from latent truth).

The rules (docs/world.md) match ``models.features`` on purpose, but this is an independent implementation:
the world must not import the pipeline it is used to test. A value failing its rule is missing (NaN);
a category outside its vocabulary is missing too. ``D`` is the UTC date of ``occurred_at``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models import vocabulary as vocab

DAYS_PER_YEAR = 365.25
NAN = float("nan")

# (attribute, event section, field, low, high): inclusive valid range, NaN outside it.
_RANGED = (
    ("income", "applicant", "monthprofit", 0.0, 5_000_000.0),
    ("expense", "applicant", "monthexpense", 0.0, 5_000_000.0),
    ("loan_term", "applicant", "loan_term", 1.0, 120.0),
    ("childcount", "applicant", "childcount", 0.0, 15.0),
    ("gender", "applicant", "gender", 0.0, 1.0),
    ("snils", "applicant", "snils", 0.0, 1.0),
    ("total_visits", "activity", "total_visits", 0.0, np.inf),
    ("time_on_site", "activity", "total_time_spent_on_website", 0.0, np.inf),
    ("page_views_per_visit", "activity", "page_views_per_visit", 0.0, np.inf),
    ("do_not_email", "activity", "do_not_email", 0.0, 1.0),
)
# (attribute, event section, field): category codes in models.vocabulary order (ranks for ordinal ones).
_CODED = (
    ("education_rank", "applicant", "education"),
    ("tenure_rank", "applicant", "value"),
    ("employment", "applicant", "employment_status"),
    ("family_status", "applicant", "family_status"),
    ("goods_category", "applicant", "goods_category"),
    ("lead_origin", "activity", "lead_origin"),
    ("lead_source", "activity", "lead_source"),
    ("last_activity", "activity", "last_activity"),
    ("last_notable_activity", "activity", "last_notable_activity"),
    ("occupation", "activity", "occupation"),
    ("specialization", "activity", "specialization"),
    ("what_matters", "activity", "what_matters_most_to_you_in_choosing_a_course"),
)


@dataclass(frozen=True)
class Observed:
    """One float array per quantity, a row per event; NaN = missing. Categories are vocabulary codes."""

    columns: dict[str, np.ndarray]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]


def observe(events: Sequence[dict[str, Any]]) -> Observed:
    """The oracle's inputs for a batch of Avro-native events."""
    sections = {
        "applicant": [e["applicant"] for e in events],
        "activity": [e["activity"] for e in events],
    }
    cols: dict[str, np.ndarray] = {}
    for name, section, field, low, high in _RANGED:
        cols[name] = _ranged(_floats(sections[section], field), low, high)
    for name, section, field in _CODED:
        cols[name] = _codes(sections[section], field, vocab.CATEGORICAL_FIELDS[f"{section}.{field}"])
    amount = _floats(sections["applicant"], "loan_amount")
    cols["loan_amount"] = np.where((amount > 0) & (amount <= 10_000_000.0), amount, np.nan)
    _add_dates(cols, events, sections["applicant"])
    _add_affordability(cols)
    return Observed(cols)


def _floats(rows: list[dict[str, Any]], field: str) -> np.ndarray:
    return np.fromiter((NAN if (v := r.get(field)) is None else float(v) for r in rows), np.float64, len(rows))


def _ranged(col: np.ndarray, low: float, high: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where((col >= low) & (col <= high), col, np.nan)


def _codes(rows: list[dict[str, Any]], field: str, vocabulary: tuple[str, ...]) -> np.ndarray:
    lookup: dict[Any, float] = {v: float(i) for i, v in enumerate(vocabulary)}
    return np.fromiter((lookup.get(r.get(field), NAN) for r in rows), np.float64, len(rows))


def _ordinals(rows: list[dict[str, Any]], field: str) -> np.ndarray:
    return np.fromiter((NAN if (d := r.get(field)) is None else d.toordinal() for r in rows), np.float64, len(rows))


def _add_dates(cols: dict[str, np.ndarray], events: Sequence[dict[str, Any]], applicants: list[dict[str, Any]]) -> None:
    day = np.fromiter((e["occurred_at"].astimezone(dt.UTC).toordinal() for e in events), np.float64, len(events))
    birth = _ordinals(applicants, "birthdate")
    start = _ordinals(applicants, "jobstartdate")
    with np.errstate(invalid="ignore"):
        age = (day - birth) / DAYS_PER_YEAR
        cols["age_years"] = np.where((age >= 16.0) & (age <= 100.0), age, np.nan)
        # a start date before the applicant was 14 is a typo; an unknown birthdate cannot rule it out
        adult_start = np.isnan(birth) | (start >= birth + 14 * DAYS_PER_YEAR)
        cols["job_tenure_years"] = np.where((start <= day) & adult_start, (day - start) / DAYS_PER_YEAR, np.nan)


def _add_affordability(cols: dict[str, np.ndarray]) -> None:
    income = cols["income"]
    payment = cols["loan_amount"] / cols["loan_term"]
    cols["payment"] = payment
    cols["payment_to_income"] = payment / np.maximum(income, 1000.0)
    cols["free_income"] = income - cols["expense"] - payment
