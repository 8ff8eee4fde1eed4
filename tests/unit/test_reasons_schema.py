"""score_result.v2 is a compatible evolution: a subscriber that reads with v1 decodes every v2 result."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_reader

from consumer.core.engine import ScoringEngine
from consumer.core.result_writer import result_schema
from consumer.service import build_engine
from consumer.settings import load_settings
from producer_tools.world import generate
from schemas import ResultDecoder, SingleObjectEncoder, load_catalog
from schemas.codec import RecordDecoder
from schemas.framing import confluent_header

CATALOG = load_catalog()
V1, V2 = CATALOG.get("score_result.v1"), CATALOG.get("score_result.v2")
ENCODE = SingleObjectEncoder(CATALOG.application_event_latest)


class V1Subscriber(RecordDecoder):
    """A downstream service that knows only score_result.v1 as its reader schema."""

    expects = "a score result"


class Registry:
    """The Schema Registry as a subscriber sees it: the scorer registered v2 under id 12."""

    def get_schema_str(self, schema_id: int) -> str:
        assert schema_id == 12
        return V2.schema_str


def _v1_view(result: dict[str, Any]) -> dict[str, Any]:
    """The v1 fields of a v2 result (what a v1 reader must see)."""
    v1 = {k: v for k, v in result.items() if k in V1.fields()}
    v1["lead"] = {k: v for k, v in result["lead"].items() if k != "reasons"}
    v1["banks"] = [{k: v for k, v in b.items() if k != "reasons"} for b in result["banks"]]
    v1["reasons"] = [{"feature": r["feature"], "contribution": r["contribution"]} for r in result["reasons"]]
    return v1


def test_the_scorer_writes_v2_and_only_adds_fields_with_defaults() -> None:
    assert result_schema() is V2 and CATALOG.score_result is V2
    assert V2.added_since(V1) == ("offers",)
    for name in ("lead", "banks"):
        assert V1.fields()[name] != V2.fields()[name]  # nested records gained reasons (with defaults)
    assert all("default" in f for f in V2.raw["fields"] if f["name"] not in V1.fields())


@pytest.mark.parametrize("framing", ["single_object", "confluent"])
def test_a_v1_reader_decodes_v2_results(framing: str) -> None:
    settings = load_settings(None, dedup={"enabled": False})
    header = confluent_header(12) if framing == "confluent" else None
    engine: ScoringEngine = build_engine(settings, header=header)
    events = generate(120, seed=17).events
    values = [s.value for s in engine.score_batch([ENCODE(e) for e in events]).scored]
    registry = Registry()
    v2_reader = ResultDecoder(CATALOG, registry)
    v1_reader = V1Subscriber(V1, CATALOG, registry)
    assert any(v2_reader.decode(v)["offers"] for v in values) and any(not v2_reader.decode(v)["offers"] for v in values)
    for value in values:
        full, old = v2_reader.decode(value), v1_reader.decode(value)
        assert set(old) == set(V1.fields()) and set(old["banks"][0]) == {
            "bank",
            "probability",
            "approved",
            "model_version",
        }
        assert old == _v1_view(full)
        if framing == "single_object":  # and fastavro's own resolution agrees
            assert schemaless_reader(BytesIO(value[10:]), V2.parsed, V1.parsed) == old


def test_a_v2_reader_fills_the_new_fields_of_v1_results_with_their_defaults() -> None:
    old = {
        "event_id": "6f1c7d0e-3a55-4c1b-9a0e-2b7d5e8f9a10",
        "application_id": "a",
        "lead_id": "l",
        "application_hash": "h",
        "event_time": 1,
        "scored_at": 2,
        "lead": {"score": 500, "probability": 0.5, "model_version": "lead-1"},
        "banks": [{"bank": "bank_a", "probability": 0.7, "approved": True, "model_version": "a-1"}],
        "best_offer": "bank_a",
        "reasons": [{"feature": "income", "contribution": 0.3}],
        "config_hash": "c",
    }
    result = ResultDecoder(CATALOG).decode(SingleObjectEncoder(V1)(old))
    assert result["offers"] == [] and result["lead"]["reasons"] == [] and result["banks"][0]["reasons"] == []
    assert result["reasons"] == [{"feature": "income", "contribution": 0.3, "code": "", "statement": {}}]
