"""The schema-to-model contract: ``crm-scorer check-schema`` on three candidate v3 schemas, the resolution rules
behind it, the feature-to-field table held to the feature pipeline, and the run-time check once per writer schema."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from consumer.commands.cli import main
from consumer.settings import Settings
from consumer.telemetry.host import Telemetry
from models.artifacts import ModelSet
from models.features import BANK_FEATURES, FEATURE_INDEX, FEATURE_NAMES, build_features
from models.schema_contract import FAILURE, FEATURE_SOURCES, WARNING, ContractRow, check_contract
from producer_tools import world
from schemas import ConfluentEncoder, EventDecoder, SingleObjectEncoder, load_catalog
from schemas.catalog import SchemaVersion

DATA = Path(__file__).parent / "schema_contract"
BANKS = [f"bank_{c}" for c in "abcde"]
READER = load_catalog().application_event_latest


def check_schema(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[list[str]], str]:
    """Exit code, table rows (model, feature, field, problem, severity) and the summary line of check-schema."""
    code = main(["check-schema", *args])
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split()[:5] for line in lines[1:-1]]
    if rows:
        assert lines[0].split()[:5] == ["MODEL", "FEATURE", "FIELD", "PROBLEM", "SEVERITY"]
    return code, rows, lines[-1]


def test_a_renamed_field_a_bank_uses_is_a_breaking_change(capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, summary = check_schema(capsys, str(DATA / "application_event.v3_renamed_income.avsc"))
    assert code == 1
    expected = [
        [bank, feature, "applicant.monthprofit", "missing_field", "failure"]
        for bank in BANKS
        for feature in ("income", "payment_to_income", "free_income")
    ]
    assert sorted(rows) == sorted(expected)
    assert summary.endswith("15 failures, 0 warnings: breaking")


def test_an_enum_that_gains_a_symbol_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, summary = check_schema(
        capsys,
        str(DATA / "application_event.v3_new_goods_symbol.avsc"),
        "--reader",
        str(DATA / "application_event.reader_goods_enum.avsc"),
    )
    assert code == 0
    assert rows == [[bank, "goods_category", "applicant.goods_category", "new_symbol", "warning"] for bank in BANKS]
    assert summary.endswith("0 failures, 5 warnings: passes")


def test_an_added_optional_field_passes(capsys: pytest.CaptureFixture[str]) -> None:
    code, rows, summary = check_schema(capsys, str(DATA / "application_event.v3_optional_field.avsc"))
    assert (code, rows) == (0, [])
    assert (
        summary
        == "application_event.v3_optional_field.avsc against application_event.v2: 0 failures, 0 warnings: passes"
    )


def test_an_enum_the_shipped_reader_reads_as_a_string_is_an_incompatible_type(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, rows, _ = check_schema(capsys, str(DATA / "application_event.v3_new_goods_symbol.avsc"))
    assert code == 1
    assert {tuple(r[2:]) for r in rows} == {("applicant.goods_category", "incompatible_type", "failure")}


def test_an_unreadable_schema_file_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "broken.avsc"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["check-schema", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crm-scorer: broken.avsc: not a valid Avro schema") and "\n" not in err


# --- the rules, on schemas edited in place ---------------------------------------------------------------------


def edited(change: Any) -> SchemaVersion:
    raw = copy.deepcopy(READER.raw)
    change({f["name"]: f for f in raw["fields"]}, raw)
    return SchemaVersion.parse(json.dumps(raw), "edited")


def section(fields: dict[str, Any], name: str) -> dict[str, Any]:
    return {f["name"]: f for f in fields[name]["type"]["fields"]}


def enum(name: str, symbols: tuple[str, ...] | list[str], default: str | None = None) -> list[Any]:
    body: dict[str, Any] = {"type": "enum", "name": name, "symbols": list(symbols)}
    if default is not None:
        body["default"] = default
    return ["null", body]


def problems(rows: list[ContractRow], model: str = "bank_a") -> set[tuple[str, str, str, str]]:
    return {(r.feature, r.field, r.problem, r.severity) for r in rows if r.model == model}


MODELS = {"bank_a": ("income", "loan_term", "goods_category", "age_years"), "lead": ("lead_origin_api",)}


def test_the_shipped_versions_pass() -> None:
    shipped = [v for v in load_catalog() if v.full_name == READER.full_name]
    assert len(shipped) >= 2
    assert {v.label: check_contract(v, READER, MODELS) for v in shipped} == {v.label: [] for v in shipped}


def test_promotions_pass_and_a_type_that_does_not_resolve_fails() -> None:
    def change(fields: dict[str, Any], _: Any) -> None:
        applicant = section(fields, "applicant")
        applicant["monthprofit"]["type"] = ["null", "float"]  # float -> double: a promotion
        applicant["loan_term"]["type"] = ["null", "string"]  # string -> int: none

    rows = check_contract(edited(change), READER, MODELS)
    assert problems(rows) == {("loan_term", "applicant.loan_term", "incompatible_type", FAILURE)}


def test_a_writer_that_only_writes_null_starves_the_feature() -> None:
    rows = check_contract(
        edited(lambda f, _: section(f, "applicant")["monthprofit"].update(type="null")), READER, MODELS
    )
    assert problems(rows) == {("income", "applicant.monthprofit", "always_missing", FAILURE)}


def test_a_field_without_a_default_that_disappears_makes_every_event_undecodable() -> None:
    def change(_: Any, raw: dict[str, Any]) -> None:
        raw["fields"] = [f for f in raw["fields"] if f["name"] != "occurred_at"]

    rows = check_contract(edited(change), READER, MODELS)
    assert [(r.model, r.field, r.problem) for r in rows] == [("*", "occurred_at", "missing_field")]


def test_a_lost_symbol_fails_and_a_symbol_the_reader_lacks_without_default_fails() -> None:
    from models.vocabulary import GOODS_CATEGORY

    def reader_change(fields: dict[str, Any], _: Any) -> None:
        section(fields, "applicant")["goods_category"]["type"] = enum("Goods", GOODS_CATEGORY)
        section(fields, "activity")["lead_origin"]["type"] = enum("Origin", ["API", "Other"])

    def writer_change(fields: dict[str, Any], raw: dict[str, Any]) -> None:
        goods = [g for g in GOODS_CATEGORY if g != "Travel"] + ["Crypto_assets"]
        section(fields, "applicant")["goods_category"]["type"] = enum("Goods", goods)
        section(fields, "activity")["lead_origin"]["type"] = enum("Origin", ["Other"], "Other")

    rows = check_contract(edited(writer_change), edited(reader_change), MODELS)
    field = "applicant.goods_category"
    assert problems(rows) == {
        ("goods_category", field, "lost_symbol", FAILURE),
        ("goods_category", field, "unreadable_symbol", FAILURE),
    }
    assert problems(rows, "lead") == {("lead_origin_api", "activity.lead_origin", "lost_symbol", FAILURE)}


def test_a_new_symbol_the_reader_knows_is_scored_as_missing() -> None:
    from models.vocabulary import GOODS_CATEGORY

    wider = (*GOODS_CATEGORY, "Crypto_assets")
    both = edited(lambda f, _: section(f, "applicant")["goods_category"].update(type=enum("Goods", wider)))
    (row,) = check_contract(both, both, MODELS)
    assert (row.problem, row.severity) == ("new_symbol", WARNING)
    assert "scored as missing" in row.detail


# --- the feature-to-field table against the pipeline itself -----------------------------------------------------


def test_every_feature_has_its_source_fields() -> None:
    assert set(FEATURE_SOURCES) == set(FEATURE_NAMES)


def test_a_field_set_to_null_changes_only_the_features_said_to_come_from_it() -> None:
    events = world.generate(400, 3).events
    before = build_features(events).matrix
    fields = [f"{part}.{name}" for part in ("applicant", "activity") for name in READER.fields(part)]
    assert len(fields) > 20
    covered: set[str] = set()
    for path in fields:
        part, name = path.split(".")
        nulled = [{**e, part: {**e[part], name: None}} for e in events]
        after = build_features(nulled).matrix
        changed = {n for n, i in FEATURE_INDEX.items() if not np.array_equal(before[:, i], after[:, i], equal_nan=True)}
        declared = {n for n, sources in FEATURE_SOURCES.items() if path in sources}
        assert changed <= declared, path
        covered |= changed
    assert set(BANK_FEATURES) <= covered  # and the table is not vacuous: each bank feature did change somewhere


# --- at run time: once per writer schema, a gauge and one log line -----------------------------------------------


class Registry:
    def __init__(self, schemas: dict[int, str]) -> None:
        self.schemas, self.asked = schemas, 0

    def get_schema_str(self, schema_id: int) -> str:
        self.asked += 1
        return self.schemas[schema_id]


def test_the_decoder_tells_each_new_writer_schema_once() -> None:
    renamed = SchemaVersion.parse((DATA / "application_event.v3_renamed_income.avsc").read_text("utf-8"), "v3")
    decoder = EventDecoder(load_catalog(), Registry({7: renamed.schema_str, 8: renamed.schema_str}))
    seen: list[str] = []
    decoder.watch_writers(lambda writer, reader: seen.append(f"{writer.label}->{reader.label}"))
    event = world.generate(1, 5).events[0]
    record = {**event, "applicant": {**event["applicant"]}}
    record["applicant"]["monthly_income"] = record["applicant"].pop("monthprofit")
    for schema_id in (7, 7, 8):
        assert decoder.decode(ConfluentEncoder(schema_id, renamed)(record))["applicant"]["monthprofit"] is None
    assert seen == ["registry id 7->application_event.v2"]  # id 8 holds the same schema: nothing new to check


def test_single_object_writers_are_told_once_per_fingerprint() -> None:
    catalog = load_catalog()
    v1 = catalog.get("application_event.v1")
    decoder = EventDecoder(catalog)
    seen: list[str] = []
    decoder.watch_writers(lambda writer, _reader: seen.append(writer.label))
    event = world.generate(1, 6).events[0]
    v1_event = {k: v for k, v in event.items() if k in v1.fields()}
    for encode, record in ((SingleObjectEncoder(READER), event), (SingleObjectEncoder(v1), v1_event)) * 2:
        assert decoder.decode(encode(record))["application_id"] == event["application_id"]
    assert seen == ["application_event.v2", "application_event.v1"]


def test_a_breaking_writer_sets_the_gauge_once_however_many_workers_meet_it(
    model_set: ModelSet, caplog: pytest.LogCaptureFixture
) -> None:
    renamed = SchemaVersion.parse((DATA / "application_event.v3_renamed_income.avsc").read_text("utf-8"), "v3")
    telemetry = Telemetry(Settings(), CollectorRegistry())
    workers = [telemetry.observer(0), telemetry.observer(1)]
    with caplog.at_level(logging.ERROR, logger="consumer.telemetry.host"):
        for observer in workers:
            observer.models_loaded(model_set)
            observer.writer_schema_seen(renamed, READER)
            observer.writer_schema_seen(READER, READER)
    gauge = "crm_scorer_schema_contract_violations"
    for bank in BANKS:
        assert telemetry.registry.get_sample_value(gauge, {"model": bank, "problem": "missing_field"}) == 3.0
    assert telemetry.registry.get_sample_value(gauge, {"model": "lead", "problem": "missing_field"}) is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert "writer schema v3 breaks the model contract (15 features" in line
    assert "bank_a.income (missing_field applicant.monthprofit)" in line
