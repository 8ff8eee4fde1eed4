"""What makes the world's data look like a real CRM's: blanks, unknown categories and soft anomalies.

Applied in place to drawn columns, in this order: random blanks per field, then about 0.5% of each
categorical field's values replaced by a value outside the vocabulary (a typo or a new category), then
soft anomalies in about 1% of events (one per event, equally often): negative income, birthdate in the
future, job start before birth, absurd loan term, negative visit count.
"""

from __future__ import annotations

import numpy as np

from producer_tools.world.sampling import blank_out

Columns = dict[str, np.ndarray]

# Random blank rate per field, on top of structural blanks (no job -> no job start date, no position).
APPLICANT_BLANKS = {
    "birthdate": 0.05,
    "education": 0.08,
    "employment_status": 0.06,
    "value": 0.08,
    "position": 0.10,
    "monthprofit": 0.07,
    "monthexpense": 0.15,
    "gender": 0.05,
    "family_status": 0.10,
    "childcount": 0.12,
    "snils": 0.08,
    "merch_code": 0.05,
    "loan_amount": 0.05,
    "loan_term": 0.05,
    "goods_category": 0.06,
}
ACTIVITY_BLANKS = {
    "lead_origin": 0.05,
    "lead_source": 0.06,
    "do_not_email": 0.05,
    "last_activity": 0.05,
    "last_notable_activity": 0.05,
    "occupation": 0.25,
    "specialization": 0.22,
    "what_matters_most_to_you_in_choosing_a_course": 0.25,
}
# The web counters are lost together when tracking fails.
WEB_COUNTERS = ("total_visits", "total_time_spent_on_website", "page_views_per_visit")
WEB_COUNTERS_BLANK = 0.05

UNKNOWN_RATE = 0.005
UNKNOWN_VALUES = {
    "education": ("Высшее-специалист", "высшее", "Среднее специальное"),
    "employment_status": ("Самозанятый", "Работаю по найму полный рабочий день\\/служу", "работаю"),
    "value": ("более 10 лет", "1-2 года"),
    "family_status": ("В браке", "Холост"),
    "goods_category": ("Crypto", "Smartphones", "furniture"),
    "lead_origin": ("Quick Add Form",),
    "lead_source": ("Olark chat", "google", "WeLearn", "Live Chat"),
    "last_activity": ("View in browser link Clicked", "Resubscribed to emails"),
    "last_notable_activity": ("Form Submitted on Website", "Resubscribed to emails"),
    "occupation": ("Freelancer",),
    "specialization": ("Select", "Data Science"),
    "what_matters_most_to_you_in_choosing_a_course": ("Career Change",),
}

ANOMALY_RATE = 0.01
ANOMALIES = ("negative_income", "future_birthdate", "job_before_birth", "absurd_loan_term", "negative_visits")
ABSURD_TERMS = np.array([0.0, -12.0, 240.0, 360.0, 999.0])


def add_imperfections(rng: np.random.Generator, applicant: Columns, activity: Columns, day: np.ndarray) -> None:
    """Blank, mistype and corrupt the columns in place (see the module docstring)."""
    for name, rate in APPLICANT_BLANKS.items():
        applicant[name] = blank_out(rng, applicant[name], rate)
    for name, rate in ACTIVITY_BLANKS.items():
        activity[name] = blank_out(rng, activity[name], rate)
    lost = rng.random(len(day)) < WEB_COUNTERS_BLANK
    for name in WEB_COUNTERS:
        activity[name] = np.where(lost, np.nan, activity[name])
    for name, values in UNKNOWN_VALUES.items():
        cols = applicant if name in applicant else activity
        _mistype(rng, cols, name, values)
    _corrupt(rng, applicant, activity, day)


def _mistype(rng: np.random.Generator, cols: Columns, name: str, values: tuple[str, ...]) -> None:
    col = cols[name]
    hit = (col != None) & (rng.random(len(col)) < UNKNOWN_RATE)  # noqa: E711 - elementwise on an object array
    col[hit] = np.asarray(values, dtype=object)[rng.integers(0, len(values), int(hit.sum()))]


def _corrupt(rng: np.random.Generator, applicant: Columns, activity: Columns, day: np.ndarray) -> None:
    n = len(day)
    kind = np.where(rng.random(n) < ANOMALY_RATE, rng.integers(0, len(ANOMALIES), n), -1)
    hit = {name: kind == i for i, name in enumerate(ANOMALIES)}
    income = applicant["monthprofit"]
    applicant["monthprofit"] = np.where(
        hit["negative_income"], -np.abs(np.nan_to_num(income, nan=30_000.0)) - 1000.0, income
    )
    birth = applicant["birthdate"]
    birth = np.where(hit["future_birthdate"], day + rng.integers(1, 3650, n), birth)
    birth = np.where(hit["job_before_birth"] & np.isnan(birth), day - 30 * 365, birth)
    applicant["birthdate"] = birth
    applicant["jobstartdate"] = np.where(
        hit["job_before_birth"], birth - rng.integers(30, 3650, n), applicant["jobstartdate"]
    )
    applicant["loan_term"] = np.where(
        hit["absurd_loan_term"], ABSURD_TERMS[rng.integers(0, len(ABSURD_TERMS), n)], applicant["loan_term"]
    )
    activity["total_visits"] = np.where(
        hit["negative_visits"], -rng.integers(1, 6, n).astype(np.float64), activity["total_visits"]
    )
