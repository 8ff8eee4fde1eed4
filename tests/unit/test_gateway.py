"""The gateway's HTTP contract in-process: the earlier services' requests, answers and errors.

The Kafka edge is an in-memory fake (``FakePublisher``), the state store a real RocksDB folder, and the lead
scorer the stream's own engine on the committed models (and, for activations, a model store holding them and a
small set trained for the test, followed by the scorer's own ``ModelFollower``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from consumer.core.dedup import APPLICANT_FIELDS, application_hash
from consumer.gateway.activity import ONE_HOT_ACTIVITY, ActivityPayload
from consumer.gateway.app import create_app
from consumer.gateway.examples import LEAD_REQUEST, PRESCORING_FORM
from consumer.gateway.forms import FeaturesStructure
from consumer.gateway.lead import LeadScorer
from consumer.gateway.middleware import GatewayMetrics
from consumer.gateway.routes import Gateway
from consumer.gateway.runtime import serve
from consumer.gateway.settings import ENV_PREFIX, GatewaySettings
from consumer.gateway.store import Task, TaskStore, ViewBatch
from consumer.kafka.model_control import ModelFollower
from consumer.service import build_offline_engine
from consumer.settings import load_settings
from models.artifacts import ModelSet
from models.config import DEFAULT_ARTIFACTS_DIR
from models.manifest import Manifest
from models.store import Activation, ModelStore
from schemas import EventDecoder, ResultDecoder, SingleObjectEncoder, load_catalog
from schemas.errors import ConfigError
from tests.model_sets import flip_a_byte, small_model_set, store_with_two_sets

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
FORM = PRESCORING_FORM
LEAD = LEAD_REQUEST
KEY = "s3cret-key"


class FakePublisher:
    """Acknowledges (or refuses) every event at once and keeps what it published."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []
        self.up = True
        self.acknowledge = True

    async def publish(self, key: bytes, value: bytes) -> None:
        if not self.acknowledge:
            raise ConnectionError("the broker did not acknowledge the event: timed out")
        self.sent.append((key, value))

    def broker_ready(self) -> bool:
        return self.up

    def close(self) -> None:
        pass


class FakeView:
    up = True

    def ready(self) -> bool:
        return self.up


class Harness:
    def __init__(
        self, store: TaskStore, lead: LeadScorer, settings: GatewaySettings, metrics: GatewayMetrics | None = None
    ) -> None:
        self.publisher, self.view, self.store = FakePublisher(), FakeView(), store
        self.metrics = metrics or GatewayMetrics(CollectorRegistry())
        self.store_open = True
        self.gateway = Gateway(
            self.publisher,
            lambda: self.store if self.store_open else None,
            self.view,
            lead,
            SingleObjectEncoder(load_catalog().application_event_latest),
            self.metrics,
            clock=lambda: NOW,
        )
        self.client = TestClient(create_app(self.gateway, settings), raise_server_exceptions=False)

    def sent_events(self) -> list[dict[str, Any]]:
        return [EventDecoder(load_catalog()).decode(value) for _key, value in self.publisher.sent]

    def requests(self, route: str, status: int) -> float:
        labels = {"route": route, "method": "GET" if "task" in route or "result" in route else "POST"}
        value = self.metrics.registry.get_sample_value("crm_gateway_requests_total", labels | {"status": str(status)})
        return value or 0.0


@pytest.fixture(autouse=True)
def no_gateway_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's settings come from each test, never from a developer's CRM_GATEWAY_* variables."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def lead_scorer() -> LeadScorer:
    catalog = load_catalog()
    engine = build_offline_engine(load_settings(None, dedup={"enabled": False}))
    return LeadScorer(engine, SingleObjectEncoder(catalog.application_event_latest), ResultDecoder(catalog).decode)


@contextlib.contextmanager
def harness_for(tmp_path: Path, lead: LeadScorer, **settings: Any) -> Iterator[Harness]:
    with TaskStore(tmp_path / "store") as store:
        yield Harness(store, lead, GatewaySettings(**settings))


@pytest.fixture
def gw(tmp_path: Path, lead_scorer: LeadScorer) -> Iterator[Harness]:
    with harness_for(tmp_path, lead_scorer) as harness:
        yield harness


def scored(store: TaskStore, task_id: str, banks: dict[str, float]) -> None:
    reasons = [{"feature": "income", "contribution": 0.5, "code": "INC", "statement": {"en": "income"}}]
    record = {"banks": banks, "best_offer": "bank_b", "reasons": reasons}
    store.apply(ViewBatch({task_id: record}, {}, {("crm.scores", 0): 1}))


def test_upload_publishes_the_form_as_an_event_keyed_by_its_application_hash(gw: Harness) -> None:
    answer = gw.client.post("/upload_features", json=FORM)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["is_complete"] is False
    [event] = gw.sent_events()
    assert body["task_id"] == application_hash(event) == event["application_id"]
    assert gw.publisher.sent[0][0] == body["task_id"].encode()
    assert event["applicant"]["birthdate"] == dt.date(1988, 7, 21)
    assert event["applicant"]["loan_term"] == 18
    assert event["applicant"]["goods_category"] == "Furniture"
    assert event["occurred_at"] == NOW


def test_the_same_form_gives_the_same_task_id_and_is_complete_once_scored(gw: Harness) -> None:
    first = gw.client.post("/upload_features", json=FORM).json()
    assert gw.client.post("/upload_features", json=FORM).json() == first
    scored(gw.store, first["task_id"], {"bank_a": 0.4})
    again = gw.client.post("/upload_features", json=FORM).json()
    assert again == {"task_id": first["task_id"], "is_complete": True}
    assert len(gw.publisher.sent) == 2  # the scored content is not published a third time


def test_a_missing_field_is_scored_as_missing(gw: Harness) -> None:
    form = {k: v for k, v in FORM.items() if k != "monthprofit"}
    assert gw.client.post("/upload_features", json=form).status_code == 200
    assert gw.sent_events()[0]["applicant"]["monthprofit"] is None


def test_a_wrong_type_is_a_422_naming_the_field_in_pydantics_shape(gw: Harness) -> None:
    answer = gw.client.post("/upload_features", json=FORM | {"goods_category": 120})
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert error["type"] == "string_type"
    assert error["loc"] == ["body", "goods_category"]
    assert error["msg"] == "Input should be a valid string"
    assert error["input"] == 120
    assert error["url"].endswith("/v/string_type")
    assert gw.publisher.sent == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("birthdate", "21.07.1988"), ("loan_term", 18.5), ("childcount", 2**31), ("position", "x" * 201)],
)
def test_values_the_event_cannot_carry_are_422s_naming_the_field(gw: Harness, field: str, value: Any) -> None:
    answer = gw.client.post("/upload_features", json=FORM | {field: value})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", field]


def test_check_task_and_get_result_follow_a_task(gw: Harness) -> None:
    task_id = gw.client.post("/upload_features", json=FORM).json()["task_id"]
    assert gw.client.get("/check_task", params={"task_id": task_id}).json() is False
    assert gw.client.get("/get_result", params={"task_id": task_id}).status_code == 409
    scored(gw.store, task_id, {"bank_a": 0.40770822763442993, "bank_b": 0.6711390018463135})
    assert gw.client.get("/check_task", params={"task_id": task_id}).json() is True
    result = gw.client.get("/get_result", params={"task_id": task_id}).json()
    assert result["task_id"] == task_id
    assert result["bank_a"] == "0.40770822763442993"
    assert result["bank_b"] == "0.6711390018463135"
    assert result["best_offer"] == "bank_b"
    assert result["reasons"][0]["feature"] == "income"


def test_the_store_tells_when_an_accepted_task_is_first_answered(tmp_path: Path) -> None:
    record: dict[str, Any] = {"banks": {"bank_a": 0.5}, "best_offer": None, "reasons": []}
    with TaskStore(tmp_path / "store") as store:
        store.accept("ab" * 16, 1_000)
        assert store.apply(ViewBatch({"ab" * 16: record, "cd" * 16: record}, {}, {})) == {"ab" * 16: 1_000}
        assert store.apply(ViewBatch({"ab" * 16: record}, {}, {})) == {}  # a second result is no first answer
    with TaskStore(tmp_path / "store") as reopened:  # it survives a restart
        assert reopened.task("ab" * 16) == Task("scored", record)


def test_unknown_and_malformed_task_ids(gw: Harness) -> None:
    unknown = gw.client.get("/check_task", params={"task_id": "0bf47865db14802e29de4d4f769c00b97966a691"})
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "Task not found"})
    missing = gw.client.get("/check_task")
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["type"] == "missing"
    assert missing.json()["detail"][0]["loc"] == ["query", "task_id"]
    assert gw.client.get("/get_result", params={"task_id": "1' OR '1'='1"}).status_code == 422


def test_a_dead_lettered_form_answers_with_its_reason(gw: Harness) -> None:
    task_id = gw.client.post("/upload_features", json=FORM).json()["task_id"]
    dead = {"reason": "invalid_field", "error": "applicant.loan_amount: too large", "field": "applicant.loan_amount"}
    gw.store.apply(ViewBatch({}, {task_id: dead}, {}))
    assert gw.client.get("/check_task", params={"task_id": task_id}).json() is True
    answer = gw.client.get("/get_result", params={"task_id": task_id})
    assert answer.status_code == 422
    [error] = answer.json()["detail"]
    assert (error["type"], error["loc"], error["msg"]) == ("invalid_field", ["body", "loan_amount"], dead["error"])


@pytest.mark.parametrize("what", ["broker", "store", "view", "no_ack"])
def test_an_upload_is_refused_with_503_when_it_cannot_be_kept(gw: Harness, what: str) -> None:
    gw.publisher.up = what != "broker"
    gw.store_open = what != "store"
    gw.view.up = what != "view"
    gw.publisher.acknowledge = what != "no_ack"
    answer = gw.client.post("/upload_features", json=FORM)
    assert answer.status_code == 503
    assert gw.publisher.sent == []
    assert gw.client.get("/readyz").status_code == (200 if what == "no_ack" else 503)
    gw.store_open = True
    task_id = application_hash({"applicant": FeaturesStructure(**FORM).applicant(), "activity": {}, "occurred_at": NOW})
    assert gw.store.task(task_id) is None  # nothing was recorded as accepted


def test_predict_answers_the_earlier_shape_with_the_stream_models_version(gw: Harness, model_set: ModelSet) -> None:
    answer = gw.client.post("/api/v1/predict", json=LEAD)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["lead_id"] == LEAD["lead_id"]
    assert len(body["request_id"]) == 36
    assert 0 <= body["prediction"]["lead_score"] <= 1000
    assert body["prediction"]["model_version"] == model_set.lead.version


def test_the_lead_score_moves_with_the_activity(gw: Harness) -> None:
    more = gw.client.post("/api/v1/predict", json=LEAD).json()["prediction"]["lead_score"]
    less = dict(LEAD, payload=LEAD["payload"] | {"total_time_spent_on_website": 0.0, "total_visits": 0.0})
    assert gw.client.post("/api/v1/predict", json=less).json()["prediction"]["lead_score"] != more


def test_predict_rejects_unknown_keys_by_name_and_unsafe_lead_ids(gw: Harness) -> None:
    unknown = gw.client.post("/api/v1/predict", json=dict(LEAD, payload=LEAD["payload"] | {"lead_quality": 1.0}))
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "payload", "lead_quality"]
    assert unknown.json()["detail"][0]["type"] == "extra_forbidden"
    injected = gw.client.post("/api/v1/predict", json=dict(LEAD, lead_id="x'; DROP TABLE leads;--"))
    assert injected.status_code == 422
    assert injected.json()["detail"][0]["loc"] == ["body", "lead_id"]
    both = dict(LEAD, payload=LEAD["payload"] | {"last_activity_email_opened": 1.0})
    conflict = gw.client.post("/api/v1/predict", json=both)
    assert conflict.status_code == 422
    assert "last_activity_email_opened and last_activity_sms_sent" in conflict.json()["detail"][0]["msg"]


class NoFeed:
    """The control topic's place: the test hands the follower each activation itself (``follow``)."""

    def poll(self, timeout_s: float) -> list[bytes]:
        return []

    def close(self) -> None:
        pass


def activation_of(store: ModelStore, version: str) -> bytes:
    return Activation(version, store.manifest_sha256(version), "2026-12-06T20:00:00.000+00:00", "test", "").to_json()


def test_predict_follows_activations_and_keeps_its_set_when_one_is_refused(tmp_path: Path) -> None:
    small_model_set(tmp_path / "trained", parent=Manifest.read(DEFAULT_ARTIFACTS_DIR).version)
    store, first, second = store_with_two_sets(tmp_path / "models", tmp_path / "trained")
    settings = load_settings(None, dedup={"enabled": False}, models={"store_dir": str(store.root)})
    catalog, metrics = load_catalog(), GatewayMetrics(CollectorRegistry())
    encode, decode = SingleObjectEncoder(catalog.application_event_latest), ResultDecoder(catalog).decode
    leads = LeadScorer(build_offline_engine(settings), encode, decode, metrics.models_served, metrics.set_refused)
    follower = ModelFollower(NoFeed(), store, settings.models, leads.version, metrics.set_refused)
    leads.follow(follower)
    lead_version = {v: store.manifest(v).models["lead"].version for v in (first, second)}
    with TaskStore(tmp_path / "tasks") as tasks:
        client = Harness(tasks, leads, GatewaySettings(), metrics).client

        def answered_by() -> str:
            answer = client.post("/api/v1/predict", json=LEAD)
            assert answer.status_code == 200, answer.text
            return str(answer.json()["prediction"]["model_version"])

        assert answered_by() == lead_version[first], "the store's active set at start"
        follower.follow(activation_of(store, second))  # verified and loaded here; taken before the next batch
        assert answered_by() == lead_version[second]
        info = {"model": "lead", "version": lead_version[second]}
        assert metrics.registry.get_sample_value("crm_gateway_model_info", info) == 1
        rollback = activation_of(store, first)
        flip_a_byte(store.directory(first) / "bank_c.ubj")
        follower.follow(rollback)
        assert answered_by() == lead_version[second], "a refused set: the running one keeps answering"
        refused = metrics.registry.get_sample_value("crm_gateway_model_set_refused_total", {"reason": "verification"})
        assert refused == 1
    leads.close()


def test_the_mapping_table_covers_the_lead_models_one_hot_inputs(model_set: ModelSet) -> None:
    one_hot = [name for name in model_set.lead.features if name.endswith("_unknown") or name in ONE_HOT_ACTIVITY]
    assert one_hot, "the lead model has one-hot inputs"
    assert set(one_hot) <= set(ActivityPayload.model_fields)
    assert set(LEAD["payload"]) <= set(ActivityPayload.model_fields)


def test_the_form_has_the_events_questionnaire_fields() -> None:
    assert tuple(FeaturesStructure.model_fields) == APPLICANT_FIELDS


def test_an_api_key_is_asked_for_when_configured(tmp_path: Path, lead_scorer: LeadScorer) -> None:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    with harness_for(tmp_path, lead_scorer, api_key_sha256=digest) as keyed:
        assert keyed.client.post("/upload_features", json=FORM).status_code == 401
        assert keyed.client.post("/upload_features", json=FORM, headers={"X-API-Key": "wrong"}).status_code == 401
        assert keyed.client.post("/upload_features", json=FORM, headers={"X-API-Key": KEY}).status_code == 200
        assert keyed.client.get("/healthz").status_code == 200
        assert keyed.client.get("/metrics").status_code == 200


def test_a_body_over_the_limit_is_413(tmp_path: Path, lead_scorer: LeadScorer) -> None:
    with harness_for(tmp_path, lead_scorer, max_body_bytes=1024) as limited:
        answer = limited.client.post("/upload_features", json=FORM | {"extra": "x" * 2000})
        assert answer.status_code == 413
        assert limited.publisher.sent == []


def test_requests_are_counted_by_route_template_and_status(gw: Harness) -> None:
    gw.client.post("/upload_features", json=FORM)
    gw.client.get("/check_task", params={"task_id": "ab" * 16})
    assert gw.requests("/upload_features", 200) == 1
    assert gw.requests("/check_task", 404) == 1
    errors = gw.metrics.registry.get_sample_value(
        "crm_gateway_request_errors_total", {"route": "/check_task", "status": "404"}
    )
    assert errors == 1
    text = gw.client.get("/metrics").text
    assert "crm_gateway_request_duration_seconds_bucket" in text
    assert "ab" * 16 not in text  # ids never become label values


def test_the_docs_page_loads_its_assets_from_the_gateway(gw: Harness) -> None:
    page = gw.client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert gw.client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert gw.client.get("/docs-assets/swagger-ui.css").status_code == 200
    paths = gw.client.get("/openapi.json").json()["paths"]
    assert {"/upload_features", "/check_task", "/get_result", "/api/v1/predict"} <= set(paths)


def test_a_port_in_use_is_one_line_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port: cannot listen on 127.0.0.1:{port}: "):
            serve(load_settings(None), GatewaySettings(port=port))
