"""The one feature pipeline, shared by training and serving.

``build_features(events)`` takes a batch of decoded application events (Avro-native dicts) and returns one
float32 matrix with a column per feature in ``FEATURE_NAMES``. It is column-wise: one pass per source field
over the batch, numpy for the arithmetic, no per-event objects kept. Missing values stay NaN (XGBoost routes
them; the lead model imputes them with its own parameters). Ages and tenures are measured against the event's
own date (``occurred_at``), never the wall clock, so a replayed event scores as it did the first time.

A value that is present but impossible (negative income, a birthdate after the event, an unknown category)
is a *soft anomaly*: it is scored as missing and counted in ``FeatureFrame.anomalies`` per (feature, kind).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models import vocabulary as vocab
from models.ranges import AGE_YEARS, VALID_RANGES, WORKING_AGE_YEARS

NAN = float("nan")
_DAYS_PER_YEAR = 365.25


def slug(text: str) -> str:
    """``'Lead Add Form'`` -> ``'lead_add_form'``: the lead-scoring dataset's column naming."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


# (feature name, event section, field): numeric fields taken as they are, NaN outside their range.
_NUMERIC_SOURCES = (
    ("income", "applicant", "monthprofit"),
    ("expense", "applicant", "monthexpense"),
    ("loan_amount", "applicant", "loan_amount"),
    ("loan_term", "applicant", "loan_term"),
    ("childcount", "applicant", "childcount"),
    ("gender", "applicant", "gender"),
    ("snils", "applicant", "snils"),
    ("merch_code", "applicant", "merch_code"),
    ("total_visits", "activity", "total_visits"),
    ("total_time_spent_on_website", "activity", "total_time_spent_on_website"),
    ("page_views_per_visit", "activity", "page_views_per_visit"),
)
# ... with the valid range of each (``models.ranges``): (feature name, event section, field, low, high).
NUMERIC_FIELDS: tuple[tuple[str, str, str, float, float], ...] = tuple(
    (name, section, src, *VALID_RANGES[f"{section}.{src}"]) for name, section, src in _NUMERIC_SOURCES
)

# (feature name, event section, field, vocabulary): categorical codes (ranks for ordinal vocabularies).
CODED_FIELDS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("education_rank", "applicant", "education", vocab.EDUCATION),
    ("tenure_rank", "applicant", "value", vocab.JOB_TENURE),
    ("employment_status", "applicant", "employment_status", vocab.EMPLOYMENT_STATUS),
    ("family_status", "applicant", "family_status", vocab.FAMILY_STATUS),
    ("goods_category", "applicant", "goods_category", vocab.GOODS_CATEGORY),
)

# Lead-activity categories one-hot encoded as in the lead-scoring dataset; `<field>_unknown` = missing/unseen.
ONE_HOT_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("lead_origin", vocab.LEAD_ORIGIN),
    ("lead_source", vocab.LEAD_SOURCE),
    ("last_activity", vocab.LAST_ACTIVITY),
    ("last_notable_activity", vocab.LAST_NOTABLE_ACTIVITY),
    ("occupation", vocab.OCCUPATION),
    ("specialization", vocab.SPECIALIZATION),
    ("what_matters_most_to_you_in_choosing_a_course", vocab.WHAT_MATTERS),
)

_DERIVED = (
    "age_years",
    "job_tenure_years",
    "payment",
    "payment_to_income",
    "free_income",
    "log_time_on_site",
    "log_total_visits",
    "do_not_email",
)


def _one_hot_names() -> list[str]:
    names: list[str] = []
    for fname, values in ONE_HOT_FIELDS:
        names += [f"{fname}_{slug(v)}" for v in values] + [f"{fname}_unknown"]
    return names


FEATURE_NAMES: tuple[str, ...] = tuple(
    [n[0] for n in NUMERIC_FIELDS] + [c[0] for c in CODED_FIELDS] + list(_DERIVED) + _one_hot_names()
)
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_NAMES)}

# Features a bank model may use (the questionnaire side), and the lead model's default inputs.
BANK_FEATURES: tuple[str, ...] = (
    "age_years",
    "job_tenure_years",
    "tenure_rank",
    "education_rank",
    "employment_status",
    "family_status",
    "goods_category",
    "income",
    "expense",
    "loan_amount",
    "loan_term",
    "payment",
    "payment_to_income",
    "free_income",
    "childcount",
    "gender",
    "snils",
)
LEAD_FEATURES: tuple[str, ...] = tuple(
    ["log_time_on_site", "log_total_visits", "page_views_per_visit", "do_not_email", *_one_hot_names()]
)


@dataclass
class FeatureFrame:
    """A batch's features: ``matrix[i, FEATURE_INDEX[name]]``; NaN = missing."""

    matrix: np.ndarray
    anomalies: dict[tuple[str, str], int] = field(default_factory=dict)

    def columns(self, names: Sequence[str]) -> np.ndarray:
        """The sub-matrix of ``names`` in that order (a copy, C-contiguous, ready for a model)."""
        return np.ascontiguousarray(self.matrix[:, [FEATURE_INDEX[n] for n in names]])

    def column(self, name: str) -> np.ndarray:
        return self.matrix[:, FEATURE_INDEX[name]]


def build_features(events: Sequence[dict[str, Any]]) -> FeatureFrame:
    """Build the feature matrix of a batch of decoded events (see the module docstring)."""
    n = len(events)
    out = np.full((n, len(FEATURE_NAMES)), np.nan, dtype=np.float64)
    frame = FeatureFrame(out)
    if n == 0:
        return frame
    applicants = [e["applicant"] for e in events]
    activities = [e["activity"] for e in events]
    sections = {"applicant": applicants, "activity": activities}
    for name, section, src, low, high in NUMERIC_FIELDS:
        out[:, FEATURE_INDEX[name]] = _ranged(frame, name, _floats(sections[section], src), low, high)
    for name, section, src, values in CODED_FIELDS:
        out[:, FEATURE_INDEX[name]] = _codes(frame, name, [r.get(src) for r in sections[section]], values)
    _one_hot(frame, activities)
    _dates_and_ratios(frame, events, applicants)
    with np.errstate(invalid="ignore", over="ignore"):  # a corrupt but in-range value may not fit float32
        matrix = out.astype(np.float32)
    return FeatureFrame(matrix, frame.anomalies)


def _floats(rows: list[dict[str, Any]], src: str) -> np.ndarray:
    # bools are ints in Python: do_not_email and friends come through here as 0/1 too.
    return np.fromiter((NAN if (v := r.get(src)) is None else v for r in rows), np.float64, len(rows))


def _count(frame: FeatureFrame, name: str, kind: str, mask: np.ndarray) -> None:
    hits = int(np.count_nonzero(mask))
    if hits:
        key = (name, kind)
        frame.anomalies[key] = frame.anomalies.get(key, 0) + hits


def _ranged(frame: FeatureFrame, name: str, col: np.ndarray, low: float, high: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(col) & ~((col >= low) & (col <= high))  # infinities fail the range too
    _count(frame, name, "out_of_range", bad)
    col[bad] = np.nan
    return col


def _codes(frame: FeatureFrame, name: str, raw: list[Any], values: tuple[str, ...]) -> np.ndarray:
    lookup: dict[Any, float] = {v: float(i) for i, v in enumerate(values)}
    lookup[None] = NAN
    col = np.fromiter((lookup.get(v, -1.0) for v in raw), np.float64, len(raw))
    unknown = col < 0
    _count(frame, name, "unknown_category", unknown)
    col[unknown] = np.nan
    return col


def _one_hot(frame: FeatureFrame, activities: list[dict[str, Any]]) -> None:
    out = frame.matrix
    for fname, values in ONE_HOT_FIELDS:
        codes = _codes(frame, fname, [a.get(fname) for a in activities], values)
        known = ~np.isnan(codes)
        first = FEATURE_INDEX[f"{fname}_{slug(values[0])}"]
        block = np.zeros((len(activities), len(values) + 1))
        block[np.flatnonzero(known), codes[known].astype(np.intp)] = 1.0
        block[~known, len(values)] = 1.0  # the `_unknown` column
        out[:, first : first + len(values) + 1] = block


def _day_numbers(rows: Sequence[dict[str, Any]], src: str) -> np.ndarray:
    return np.fromiter((NAN if (d := r.get(src)) is None else d.toordinal() for r in rows), np.float64, len(rows))


def _dates_and_ratios(frame: FeatureFrame, events: Sequence[dict[str, Any]], applicants: list[dict[str, Any]]) -> None:
    col = frame.column
    out, idx = frame.matrix, FEATURE_INDEX
    today = np.fromiter((e["occurred_at"].toordinal() for e in events), np.float64, len(events))
    birth = _day_numbers(applicants, "birthdate")
    start = _day_numbers(applicants, "jobstartdate")
    with np.errstate(invalid="ignore"):
        age = (today - birth) / _DAYS_PER_YEAR
        bad_age = ~np.isnan(age) & ((age < AGE_YEARS[0]) | (age > AGE_YEARS[1]))
        _count(frame, "age_years", "out_of_range", bad_age)
        age[bad_age] = np.nan
        tenure = (today - start) / _DAYS_PER_YEAR
        bad_tenure = ~np.isnan(tenure) & ((tenure < 0) | (start < birth + WORKING_AGE_YEARS * _DAYS_PER_YEAR))
        _count(frame, "job_tenure_years", "out_of_range", bad_tenure)
        tenure[bad_tenure] = np.nan
        payment = col("loan_amount") / col("loan_term")
        income = col("income")
        out[:, idx["payment"]] = payment
        out[:, idx["payment_to_income"]] = payment / np.maximum(income, 1000.0)
        out[:, idx["free_income"]] = income - col("expense") - payment
        out[:, idx["log_time_on_site"]] = np.log1p(col("total_time_spent_on_website") / 60.0)
        out[:, idx["log_total_visits"]] = np.log1p(col("total_visits"))
    out[:, idx["age_years"]] = age
    out[:, idx["job_tenure_years"]] = tenure
    out[:, idx["do_not_email"]] = _floats([e["activity"] for e in events], "do_not_email")
