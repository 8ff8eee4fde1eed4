"""Every bank's reasons: XGBoost's own numbers, the decision's direction, codes from the table."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from consumer.core.engine import ScoringEngine
from consumer.core.reason_report import bank_accuracy
from consumer.core.result_writer import result_schema
from consumer.service import build_engine
from consumer.settings import load_settings
from models.artifacts import BankModel, ModelSet, feature_matrix
from models.config import ModelsConfig
from models.features import build_features
from models.leaf_table import LeafTable
from models.reasons import LANGUAGES, reason_inputs, shipped_reason_codes, top_reasons
from producer_tools.world import generate
from schemas import EventDecoder, ResultDecoder, SingleObjectEncoder, load_catalog
from schemas.framing import single_object_header

CATALOG = load_catalog()
ENCODE = SingleObjectEncoder(CATALOG.application_event_latest)
RESULTS = ResultDecoder(CATALOG)


@pytest.fixture(scope="module")
def frame() -> Any:
    return build_features(generate(3000, seed=41).events)


def test_margins_are_xgboosts_to_the_bit_and_contributions_its_approximate_ones_to_float32(
    model_set: ModelSet, frame: Any
) -> None:
    assert model_set.banks
    for bank in model_set.banks:
        x = frame.columns(bank.features)
        margin, ours = bank.explain(bank.leaves(x))
        assert np.array_equal(margin, bank.margin(x)), bank.name  # the published probability is unchanged
        xgboost = bank.contributions(x)  # pred_contribs=True, approx_contribs=True
        np.testing.assert_allclose(ours, xgboost, rtol=1e-6, atol=1e-6, err_msg=bank.name)
        assert np.abs(xgboost).max() > 1.0  # contributions of a size where float32 precision is the bar
        report = bank_accuracy(bank, frame, 3)
        assert report.within_float32 and report.max_abs_difference < 1e-6
        assert 0.5 < report.same_top_set <= 1.0  # Saabas is not TreeSHAP, but names mostly the same features


def test_a_tree_table_sums_a_hand_checked_tree() -> None:
    """One depth-1 tree on one feature: the leaf's contribution is its value minus the cover-weighted mean."""
    import xgboost as xgb

    x = np.array([[0.0], [0.0], [0.0], [1.0]], dtype=np.float32)
    booster = xgb.train(
        {"max_depth": 1, "eta": 1.0, "lambda": 0.0, "base_score": 0.5, "nthread": 1},
        xgb.DMatrix(x, label=[0.0, 0.0, 0.0, 1.0]),
        1,
    )
    table = LeafTable.of(booster)
    out = table.margin_and_contributions(booster.predict(xgb.DMatrix(x), pred_leaf=True))
    mean = 0.75 * out[0, 1] + 0.25 * out[3, 1] - 0.5  # root mean: leaves weighted by cover (hessian 1 each)
    assert out[0, 0] == pytest.approx(out[0, 1] - 0.5 - mean, abs=1e-6)
    assert np.array_equal(out[:, 1], booster.predict(xgb.DMatrix(x), output_margin=True))


def test_top_reasons_follow_the_decision_and_keep_only_its_sign() -> None:
    contributions = np.array([[0.5, -0.2, 0.9, -0.7], [0.5, -0.2, 0.9, -0.7], [0.1, 0.1, -0.3, 0.0]], np.float32)
    up = np.array([True, False, True])
    features, values = top_reasons(contributions, up, 3)
    assert features.tolist() == [[2, 0, -1], [3, 1, -1], [0, 1, -1]]  # equal strengths: feature order
    assert values[0].tolist() == pytest.approx([0.9, 0.5, 0.0])


def _low_income(event: dict[str, Any]) -> dict[str, Any]:
    low = copy.deepcopy(event)
    low["applicant"].update(monthprofit=12_000.0, monthexpense=9_000.0, loan_amount=150_000.0, loan_term=12)
    return low


def _bank_without_income() -> BankModel:
    """A bank whose model knows only age, amount and term."""
    import xgboost as xgb

    features = ("age_years", "loan_amount", "loan_term")
    frame = build_features(generate(2000, seed=43).events)
    x = frame.columns(features)
    y = (np.nan_to_num(x[:, 0], nan=40) > 30) & (np.nan_to_num(x[:, 1], nan=1e5) < 2e5)
    booster = xgb.train(
        {"max_depth": 3, "nthread": 1, "objective": "binary:logistic"},
        xgb.DMatrix(x, label=y.astype(float), missing=np.nan),
        20,
    )
    return BankModel("bank_y", "bank_y-1", features, 0.99, booster, (1.0, 0.0))


def test_a_low_income_is_income_low_for_banks_that_use_income_and_never_for_one_that_does_not(
    model_set: ModelSet,
) -> None:
    models = ModelSet((*model_set.banks, _bank_without_income()), model_set.lead, model_set.manifest)
    header = single_object_header(result_schema())
    engine = ScoringEngine(
        models, EventDecoder(CATALOG), header, config_hash="test", reasons=3, statement_languages=LANGUAGES
    )
    events = [_low_income(e) for e in generate(5, seed=11).events]
    results = [RESULTS.decode(s.value) for s in engine.score_batch([ENCODE(e) for e in events]).scored]
    assert len(results) == 5
    for result in results:
        by_bank = {b["bank"]: b for b in result["banks"]}
        for bank in model_set.banks:
            entry = by_bank[bank.name]
            assert not entry["approved"]
            assert "INCOME_LOW" in [r["code"] for r in entry["reasons"]], bank.name
            assert all(r["contribution"] < 0 for r in entry["reasons"])  # a decline's reasons pulled it down
        without = by_bank["bank_y"]
        assert without["reasons"] and not {r["code"] for r in without["reasons"]} & {"INCOME_LOW", "INCOME_MISSING"}
        assert {r["feature"] for r in without["reasons"]} <= {"age_years", "loan_amount", "loan_term"}


def test_missing_income_is_its_own_code_and_an_approvals_reasons_pushed_it_up() -> None:
    engine = build_engine(load_settings(None, results={"statement_languages": ["ru", "en"]}))
    events = generate(200, seed=11).events
    missing = _low_income(events[0])
    missing["applicant"]["monthprofit"] = None
    (result,) = [RESULTS.decode(s.value) for s in engine.score_batch([ENCODE(missing)]).scored]
    codes = [r["code"] for b in result["banks"] for r in b["reasons"]]
    assert "INCOME_MISSING" in codes and "INCOME_LOW" not in codes
    table = shipped_reason_codes()
    approvals = 0
    for scored in engine.score_batch([ENCODE(e) for e in events]).scored:
        for entry in RESULTS.decode(scored.value)["banks"]:
            for reason in entry["reasons"]:
                statements = table[reason["feature"]]
                kinds = (
                    {"up": statements.up, "missing": statements.statement("missing")}
                    if entry["approved"]
                    else {"down": statements.down, "missing": statements.statement("missing")}
                )
                assert reason["code"] in {s.code for s in kinds.values()}
                assert (reason["contribution"] > 0) == entry["approved"]
                match = next(s for s in kinds.values() if s.code == reason["code"])
                assert reason["statement"] == {"ru": match.ru, "en": match.en}
            approvals += entry["approved"]
    assert approvals > 50


def test_the_lead_explains_its_one_hot_fields_per_source_field(engine: ScoringEngine) -> None:
    events = generate(100, seed=13).events
    results = [RESULTS.decode(s.value) for s in engine.score_batch([ENCODE(e) for e in events]).scored]
    names = reason_inputs(engine.models.lead.features).names
    assert "lead_source" in names and not any(n.startswith("lead_source_") for n in names)
    seen = {r["feature"] for res in results for r in res["lead"]["reasons"]}
    assert seen <= set(names) and seen & {"lead_source", "lead_origin", "last_activity", "last_notable_activity"}
    x = build_features(events).columns(engine.models.lead.features).astype(np.float64)
    exact = engine.models.lead.params.contributions(x)
    summed = reason_inputs(engine.models.lead.features).summed(exact)
    total = summed.sum(axis=1) + engine.models.lead.params.intercept
    assert np.allclose(total, engine.models.lead.params.margin(x))  # the grouped reasons still add up to the score


def test_every_explained_feature_needs_a_code_and_overrides_replace_one_feature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import models.config as config_module

    shipped = config_module.merged_reason_codes(None)
    monkeypatch.setattr(
        config_module, "merged_reason_codes", lambda _: {k: v for k, v in shipped.items() if k != "income"}
    )
    with pytest.raises(ValidationError, match=r"reason_codes has no entry for \['income'\]"):
        ModelsConfig()
    monkeypatch.undo()
    custom = {
        "down": {"code": "INCOME_BELOW_POLICY", "ru": "Доход ниже политики", "en": "Income below policy"},
        "up": {"code": "INCOME_OK", "ru": "Доход в норме", "en": "Income fine"},
    }
    config = ModelsConfig(reason_codes={"income": custom})
    assert config.reason_codes["income"].down.code == "INCOME_BELOW_POLICY"
    assert config.reason_codes["income"].statement("missing").code == "INCOME_BELOW_POLICY"  # no missing: down
    assert config.reason_codes["expense"] == shipped_reason_codes()["expense"]
    with pytest.raises(ValidationError, match="less than or equal to 4"):
        ModelsConfig(reasons=5)
    with pytest.raises(ValidationError, match="code"):
        ModelsConfig(reason_codes={"income": custom | {"up": {"code": "lower case", "ru": "a", "en": "b"}}})


def test_feature_matrix_is_shared_by_banks_with_the_same_features(model_set: ModelSet, frame: Any) -> None:
    x = frame.columns(model_set.banks[0].features)
    shared = feature_matrix(x)
    assert len(model_set.banks) > 1
    for bank in model_set.banks:
        assert np.array_equal(bank.leaves(shared), bank.leaves(x))


def test_the_reasons_report_prints_the_agreement_and_the_cost(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from consumer.commands.cli import main
    from schemas.json_view import to_json_view

    source = tmp_path / "events.jsonl"
    source.write_text("".join(json.dumps(to_json_view(e)) + "\n" for e in generate(400, seed=5).events))
    assert main(["reasons-report", "--in", str(source), "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    overall = next(line for line in out.splitlines() if line.startswith("all "))
    assert " yes " in overall and "(2,000 bank decisions)" in overall
    assert "reasons alone: before" in out and "us/event (5 banks and the lead)" in out
