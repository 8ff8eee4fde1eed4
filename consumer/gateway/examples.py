"""The earlier services' own example requests (their documentation), shown on the docs page and used by tests."""

from __future__ import annotations

from typing import Any

# The pre-scoring service's upload (its documentation, section 1).
PRESCORING_FORM: dict[str, Any] = {
    "birthdate": "1988-07-21 00:00:00.0000000",
    "education": "Высшее - специалист",
    "employment_status": "Работаю по найму полный рабочий день\\/служу",
    "value": "9 - 10 лет",
    "jobstartdate": "2013-09-01 00:00:00.0000000",
    "position": "начальник п",
    "monthprofit": 180000.0,
    "monthexpense": 100000.0,
    "gender": 0,
    "family_status": "Никогда в браке не состоял(а)",
    "childcount": 0,
    "snils": 0,
    "merch_code": 77,
    "loan_amount": 137000.0,
    "loan_term": 18.0,
    "goods_category": "Furniture",
}

# The lead-scoring service's request body.
LEAD_REQUEST: dict[str, Any] = {
    "lead_id": "7927b2df-8bba-4d29-b9a2-b6e0beafe620",
    "payload": {
        "total_time_spent_on_website": 869.0,
        "last_notable_activity_sms_sent": 1.0,
        "lead_origin_lead_add_form": 0.0,
        "what_matters_most_to_you_in_choosing_a_course_better_career_prospects": 0.0,
        "occupation_working_professional": 0.0,
        "what_matters_most_to_you_in_choosing_a_course_unknown": 1.0,
        "total_visits": 9.0,
        "last_activity_sms_sent": 1.0,
        "page_views_per_visit": 4.5,
        "last_activity_email_opened": 0.0,
        "last_notable_activity_modified": 0.0,
        "do_not_email": 0.0,
        "specialization_unknown": 0.0,
        "lead_source_olark_chat": 0.0,
        "lead_source_direct_traffic": 0.0,
    },
}
