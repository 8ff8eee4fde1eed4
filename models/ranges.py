"""The valid range of every numeric event field, and of the ages derived from its dates: one table.

The feature pipeline (``models.features``) and the synthetic world's oracle (``producer_tools.world.observed``)
both read it, so the service and the ground truth it is tested against cannot disagree about what a valid value
is (they once did: ``total_visits`` was capped at 1e6 on one side and unbounded on the other). Bounds are
inclusive; a value outside them is a soft anomaly, scored as missing. Keys are ``section.field`` of the
application event, as in ``models.vocabulary.CATEGORICAL_FIELDS``.
"""

from __future__ import annotations

VALID_RANGES: dict[str, tuple[float, float]] = {
    "applicant.monthprofit": (0.0, 5_000_000.0),
    "applicant.monthexpense": (0.0, 5_000_000.0),
    "applicant.loan_amount": (1e-9, 10_000_000.0),  # a loan of nothing is not a loan
    "applicant.loan_term": (1.0, 120.0),  # months
    "applicant.childcount": (0.0, 15.0),
    "applicant.gender": (0.0, 1.0),
    "applicant.snils": (0.0, 1.0),
    "applicant.merch_code": (0.0, 1e9),
    "activity.do_not_email": (0.0, 1.0),
    "activity.total_visits": (0.0, 1e6),
    "activity.total_time_spent_on_website": (0.0, 1e8),  # seconds
    "activity.page_views_per_visit": (0.0, 1e4),
}

AGE_YEARS = (16.0, 100.0)  # the applicant's age on the event's date
WORKING_AGE_YEARS = 14.0  # a job that started before this age is a typo
