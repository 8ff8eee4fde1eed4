"""The feature pipeline on missing, unknown and anomalous values."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from models.features import FEATURE_NAMES, build_features

OCCURRED = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def event(**applicant: object) -> dict:
    base = {
        "birthdate": dt.date(1988, 7, 21),
        "education": "Высшее - специалист",
        "employment_status": "Собственное дело",
        "value": "9 - 10 лет",
        "jobstartdate": dt.date(2016, 3, 2),
        "monthprofit": 180000.0,
        "monthexpense": 100000.0,
        "loan_amount": 137000.0,
        "loan_term": 18,
        "goods_category": "Furniture",
        "childcount": 0,
        "gender": 0,
        "snils": 1,
    }
    activity = {
        "lead_origin": "Lead Add Form",
        "lead_source": "Olark Chat",
        "total_time_spent_on_website": 600,
        "total_visits": 3,
        "page_views_per_visit": 2.5,
        "do_not_email": False,
    }
    return {"occurred_at": OCCURRED, "applicant": base | applicant, "activity": activity}


def features(ev: dict) -> dict[str, float]:
    frame = build_features([ev])
    return dict(zip(FEATURE_NAMES, frame.matrix[0].tolist(), strict=True))


def test_ages_and_ratios_are_relative_to_the_event_time() -> None:
    f = features(event())
    assert f["age_years"] == pytest.approx((OCCURRED.date() - dt.date(1988, 7, 21)).days / 365.25, rel=1e-6)
    assert f["job_tenure_years"] == pytest.approx(10.0, abs=0.01)
    assert f["payment"] == pytest.approx(137000 / 18, rel=1e-6)
    assert f["payment_to_income"] == pytest.approx(137000 / 18 / 180000, rel=1e-5)
    assert f["free_income"] == pytest.approx(180000 - 100000 - 137000 / 18, rel=1e-5)
    assert f["education_rank"] == 5.0 and f["tenure_rank"] == 7.0


def test_one_hot_lead_columns_follow_the_lead_scoring_names() -> None:
    f = features(event())
    assert f["lead_origin_lead_add_form"] == 1.0 and f["lead_origin_api"] == 0.0
    assert f["lead_source_olark_chat"] == 1.0
    assert f["specialization_unknown"] == 1.0  # missing counts as unknown, as in the dataset
    assert f["log_time_on_site"] == pytest.approx(math.log1p(10.0), rel=1e-6)


def test_missing_values_stay_missing() -> None:
    f = features(event(monthprofit=None, birthdate=None, goods_category=None))
    assert math.isnan(f["income"]) and math.isnan(f["age_years"]) and math.isnan(f["goods_category"])
    assert math.isnan(f["payment_to_income"])  # a ratio of a missing value is missing
    assert build_features([event(monthprofit=None)]).anomalies == {}


@pytest.mark.parametrize(
    ("field", "value", "feature"),
    [
        ("monthprofit", -5000.0, "income"),
        ("monthprofit", float("inf"), "income"),
        ("monthprofit", float("nan"), "income"),
        ("birthdate", dt.date(2030, 1, 1), "age_years"),
        ("jobstartdate", dt.date(1980, 1, 1), "job_tenure_years"),
        ("loan_term", 0, "loan_term"),
        ("childcount", -1, "childcount"),
    ],
)
def test_soft_anomalies_are_scored_as_missing_and_counted(field: str, value: object, feature: str) -> None:
    frame = build_features([event(**{field: value})])
    got = dict(zip(FEATURE_NAMES, frame.matrix[0].tolist(), strict=True))
    assert math.isnan(got[feature])
    if not (isinstance(value, float) and math.isnan(value)):
        assert frame.anomalies[(feature, "out_of_range")] == 1


def test_a_birthdate_after_the_event_also_voids_the_job_start_date() -> None:
    # the start date is checked against age 14, which an impossible birthdate cannot give
    frame = build_features([event(birthdate=dt.date(2030, 1, 1))])
    assert np.isnan(frame.column("job_tenure_years")[0])
    assert frame.anomalies == {("age_years", "out_of_range"): 1, ("job_tenure_years", "out_of_range"): 1}


def test_unknown_category_is_missing_and_counted() -> None:
    frame = build_features([event(goods_category="Crypto"), event()])
    assert np.isnan(frame.column("goods_category")[0]) and frame.column("goods_category")[1] == 0.0
    assert frame.anomalies == {("goods_category", "unknown_category"): 1}


def test_batch_matches_one_by_one() -> None:
    events = [event(), event(monthprofit=None), event(goods_category="Travel", loan_term=6)]
    batch = build_features(events).matrix
    single = np.vstack([build_features([e]).matrix for e in events])
    np.testing.assert_array_equal(batch, single)


OUT_OF_RANGE = [  # (section, field, value, pipeline feature, oracle quantity)
    ("activity", "total_visits", 2_000_000, "total_visits", "total_visits"),
    ("activity", "page_views_per_visit", 20_000.0, "page_views_per_visit", "page_views_per_visit"),
    ("applicant", "loan_term", 240, "loan_term", "loan_term"),
    ("applicant", "monthprofit", -1.0, "income", "income"),
    ("applicant", "birthdate", dt.date(2020, 1, 1), "age_years", "age_years"),
]


@pytest.mark.parametrize(("section", "field", "value", "feature", "quantity"), OUT_OF_RANGE)
def test_the_pipeline_and_the_oracle_agree_on_what_is_out_of_range(section, field, value, feature, quantity) -> None:
    """Both read models.ranges: a value one side scores as missing is missing on the other side too."""
    from producer_tools.world.observed import observe

    bad = event()
    bad[section] = bad[section] | {field: value}
    assert math.isnan(features(bad)[feature]) and math.isnan(observe([bad])[quantity][0])
    assert not math.isnan(features(event())[feature]) and not math.isnan(observe([event()])[quantity][0])
