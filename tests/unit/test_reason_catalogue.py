"""Results carry reason codes; the catalogue renders them (tail, the gateway) in the subscriber's language."""

from __future__ import annotations

from typing import Any

from consumer.gateway.results import result_record
from models.reasons import LANGUAGES, shipped_reason_codes, statements_by_code
from producer_tools.publishing.views import score_row, with_statements


def _view(reason: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": "e-1",
        "application_id": "app-1",
        "best_offer": None,
        "lead": {"score": 500, "probability": 0.5, "reasons": []},
        "banks": [{"bank": "bank_a", "probability": 0.2, "approved": False, "reasons": [reason]}],
        "reasons": [],
        "offers": [],
    }


def test_the_catalogue_has_every_code_of_the_shipped_table_in_every_language() -> None:
    catalogue = statements_by_code()
    codes = {entry.statement(kind).code for entry in shipped_reason_codes().values() for kind in ("down", "up")}
    assert codes <= set(catalogue)
    assert all(set(texts) == set(LANGUAGES) and all(texts.values()) for texts in catalogue.values())


def test_tail_renders_a_code_without_statement_from_the_catalogue() -> None:
    catalogue = statements_by_code()
    code = next(iter(catalogue))
    view = with_statements(
        _view({"feature": "income", "contribution": -0.4, "code": code, "statement": {}}), "en", catalogue
    )
    assert view["banks"][0]["reasons"][0]["statement"] == {"en": catalogue[code]["en"]}
    assert f'{code}(-0.40) "{catalogue[code]["en"]}"' in score_row(view)


def test_a_statement_the_result_carries_wins_and_an_unknown_code_stays_bare() -> None:
    catalogue = statements_by_code()
    own = {"feature": "income", "contribution": 0.1, "code": next(iter(catalogue)), "statement": {"en": "own text"}}
    unknown = {"feature": "x", "contribution": 0.1, "code": "NOT_A_CODE", "statement": {}}
    view = _view(own)
    view["banks"][0]["reasons"].append(unknown)
    rendered = with_statements(view, "en", catalogue)["banks"][0]["reasons"]
    assert rendered[0]["statement"] == {"en": "own text"} and rendered[1]["statement"] == {}
    assert score_row(view).endswith("NOT_A_CODE(+0.10)")


def test_the_gateway_answers_with_the_catalogues_statement_when_the_result_has_none() -> None:
    catalogue = statements_by_code()
    code = next(iter(catalogue))
    result = {
        "banks": [{"bank": "bank_a", "probability": 0.3}],
        "best_offer": None,
        "reasons": [{"feature": "income", "contribution": -0.2, "code": code, "statement": {}}],
    }
    assert result_record(result)["reasons"][0]["statement"] == catalogue[code]
