"""The quantities the oracle sees, derived from the observed event fields only (never from latent truth).

The rules (docs/world.md) match ``models.features`` on purpose, but this is an independent implementation:
the world must not import the pipeline it is used to test. The valid ranges are data both read from one
table, ``models.ranges``. A value failing its rule is missing (NaN);
a category outside its vocabulary is missing too. ``D`` is the UTC date of ``occurred_at``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models import vocabulary as vocab
from models.ranges import AGE_YEARS, VALID_RANGES, WORKING_AGE_YEARS

DAYS_PER_YEAR = 365.25
NAN = float("nan")

# (attribute, event section, field): NaN outside the field's valid range (``models.ranges``, shared with the
# feature pipeline: a data table, not the pipeline's code).
_RANGED = (
    ("income", "applicant", "monthprofit"),
    ("expense", "applicant", "monthexpense"),
    ("loan_amount", "applicant", "loan_amount"),
    ("loan_term", "applicant", "loan_term"),
    ("childcount", "applicant", "childcount"),
    ("gender", "applicant", "gender"),
    ("snils", "applicant", "snils"),
    ("total_visits", "activity", "total_visits"),
    ("time_on_site", "activity", "total_time_spent_on_website"),
    ("page_views_per_visit", "activity", "page_views_per_visit"),
    ("do_not_email", "activity", "do_not_email"),
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
    for name, section, field in _RANGED:
        cols[name] = _ranged(_floats(sections[section], field), *VALID_RANGES[f"{section}.{field}"])
    for name, section, field in _CODED:
        cols[name] = _codes(sections[section], field, vocab.CATEGORICAL_FIELDS[f"{section}.{field}"])
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
        cols["age_years"] = np.where((age >= AGE_YEARS[0]) & (age <= AGE_YEARS[1]), age, np.nan)
        # a start date before working age is a typo; an unknown birthdate cannot rule it out
        adult_start = np.isnan(birth) | (start >= birth + WORKING_AGE_YEARS * DAYS_PER_YEAR)
        cols["job_tenure_years"] = np.where((start <= day) & adult_start, (day - start) / DAYS_PER_YEAR, np.nan)


def _add_affordability(cols: dict[str, np.ndarray]) -> None:
    income = cols["income"]
    payment = cols["loan_amount"] / cols["loan_term"]
    cols["payment"] = payment
    cols["payment_to_income"] = payment / np.maximum(income, 1000.0)
    cols["free_income"] = income - cols["expense"] - payment
