"""``crm-scorer gateway`` against a real broker with the scorer running: the earlier services' own example
requests (``shared/background/``) answered in their documented shapes, through the stream.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from consumer.commands.cli import main
from consumer.gateway.examples import LEAD_REQUEST as LEAD
from consumer.gateway.examples import PRESCORING_FORM as FORM
from models.config import DEFAULT_ARTIFACTS_DIR
from models.manifest import Manifest
from producer_tools.publishing.topics import read_all
from producer_tools.servers.broker import LocalBroker
from schemas.dead_letter import DeadLetterInfo
from tests.integration.harness import Lanes, ScorerProcess
from tests.model_sets import small_model_set, store_with_two_sets

GATEWAY = [sys.executable, "-m", "consumer.commands.cli", "gateway"]
_LISTENING = re.compile(r"listening on (http://[^\s/]+:\d+)")
BANK = re.compile(r"bank_\w+")


class GatewayProcess:
    """``crm-scorer gateway`` on ``lanes`` in a subprocess, on a free port, with its store in ``store``."""

    def __init__(self, lanes: Lanes, store: Path, log_dir: Path, **env: str) -> None:
        flags = {
            "--bootstrap-servers": lanes.bootstrap,
            "--input-topic": lanes.input,
            "--output-topic": lanes.output,
            "--dlq-topic": lanes.dlq,
            "--port": "0",
            "--store-path": str(store),
        }
        self.args = [*GATEWAY, *(part for flag in flags.items() for part in flag)]
        self.env = os.environ | {"CRM_GATEWAY_READINESS_INTERVAL_S": "0.5", "CRM_GATEWAY_PUBLISH_TIMEOUT_S": "4"} | env
        self.log_path = log_dir / f"gateway-{time.monotonic_ns()}.log"
        self.url = ""

    def __enter__(self) -> GatewayProcess:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        self.client = httpx.Client(timeout=30)
        try:
            self.url = self._listening(deadline=time.monotonic() + 120)
            self.client.base_url = httpx.URL(self.url)
            self.wait_ready(True, timeout=120)  # a loaded machine: models load, the view assigns itself
        except BaseException:
            self.__exit__()
            raise
        return self

    def _listening(self, deadline: float) -> str:
        while not (found := _LISTENING.search(self.log)):
            assert self.process.poll() is None, f"gateway exited:\n{self.log}"
            assert time.monotonic() < deadline, f"gateway did not listen in time:\n{self.log}"
            time.sleep(0.1)
        return found.group(1)

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, ready: bool, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while (self.client.get("/readyz").status_code == 200) != ready:
            assert time.monotonic() < deadline, f"/readyz never became {ready}:\n{self.log[-3000:]}"
            time.sleep(0.2)

    def result(self, task_id: str, timeout: float = 120.0) -> httpx.Response:
        """``get_result`` once ``check_task`` says true (the earlier clients' polling)."""
        deadline = time.monotonic() + timeout
        while self.client.get("/check_task", params={"task_id": task_id}).json() is not True:
            assert time.monotonic() < deadline, f"task {task_id} not complete within {timeout} s:\n{self.log[-3000:]}"
            time.sleep(0.2)
        return self.client.get("/get_result", params={"task_id": task_id})


@pytest.fixture
def lanes(kafka_bootstrap: str, make_topic: Callable[..., str], unique_group: Callable[[], str]) -> Lanes:
    return Lanes(kafka_bootstrap, make_topic(3, "in"), make_topic(3, "out"), make_topic(1, "dlq"), unique_group())


@pytest.fixture
def scorer(lanes: Lanes, tmp_path: Path) -> Iterator[ScorerProcess]:
    with ScorerProcess(lanes, tmp_path) as running:
        yield running


def assert_result_shape(result: dict[str, Any], task_id: str) -> None:
    banks = [key for key in result if BANK.fullmatch(key)]
    assert len(banks) >= 2, result
    assert result["task_id"] == task_id
    assert all(0.0 <= float(result[bank]) <= 1.0 and isinstance(result[bank], str) for bank in banks)
    assert result["best_offer"] is None or result["best_offer"] in banks
    assert isinstance(result["reasons"], list)


def test_the_earlier_services_requests_through_the_stream(lanes: Lanes, scorer: ScorerProcess, tmp_path: Path) -> None:
    with GatewayProcess(lanes, tmp_path / "store", tmp_path) as gateway:
        upload = gateway.client.post("/upload_features", json=FORM)
        assert upload.status_code == 200, upload.text
        assert upload.json()["is_complete"] is False
        task_id = upload.json()["task_id"]
        result = gateway.result(task_id)
        assert result.status_code == 200, result.text
        assert_result_shape(result.json(), task_id)
        assert gateway.client.post("/upload_features", json=FORM).json() == {"task_id": task_id, "is_complete": True}

        wrong = gateway.client.post("/upload_features", json=FORM | {"goods_category": 120})
        assert wrong.status_code == 422
        assert {k: wrong.json()["detail"][0][k] for k in ("type", "loc", "msg", "input")} == {
            "type": "string_type",
            "loc": ["body", "goods_category"],
            "msg": "Input should be a valid string",
            "input": 120,
        }
        example_id = "0bf47865db14802e29de4d4f769c00b97966a691"  # the documentation's own
        missing = gateway.client.get("/check_task", params={"task_id": example_id})
        assert (missing.status_code, missing.json()) == (404, {"detail": "Task not found"})
        assert gateway.client.get("/get_result").json()["detail"][0]["loc"] == ["query", "task_id"]

        predict = gateway.client.post("/api/v1/predict", json=LEAD)
        assert predict.status_code == 200, predict.text
        assert predict.json()["lead_id"] == LEAD["lead_id"]
        assert 0 <= predict.json()["prediction"]["lead_score"] <= 1000
        assert predict.json()["prediction"]["model_version"]
    # The store survives a restart; a lost one is rebuilt from the topics.
    for store in (tmp_path / "store", tmp_path / "new-store"):
        with GatewayProcess(lanes, store, tmp_path) as gateway:
            again = gateway.result(task_id, timeout=30)
            assert again.json() == result.json()


def test_a_dead_lettered_form_answers_with_its_reason(lanes: Lanes, tmp_path: Path) -> None:
    # No scorer: the dead letter is written as the scorer writes one (KIP-1034 headers, the original key).
    with GatewayProcess(lanes, tmp_path / "store", tmp_path) as gateway:
        task_id = gateway.client.post("/upload_features", json=FORM).json()["task_id"]
        assert gateway.client.get("/check_task", params={"task_id": task_id}).json() is False
        info = DeadLetterInfo(
            "invalid_field",
            "applicant.loan_amount: too large",
            "applicant.loan_amount",
            lanes.input,
            0,
            0,
            dt.datetime.now(dt.UTC),
        )
        headers: list[tuple[str, str | bytes | None]] = list(info.headers())
        producer = Producer({"bootstrap.servers": lanes.bootstrap})
        producer.produce(lanes.dlq, b"original bytes", task_id.encode(), headers=headers)
        assert producer.flush(10) == 0
        answer = gateway.result(task_id, timeout=30)
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["type"] == "invalid_field"
        assert answer.json()["detail"][0]["loc"] == ["body", "loan_amount"]


def test_uploads_are_refused_while_the_broker_is_away(lanes: Lanes, local_broker: LocalBroker, tmp_path: Path) -> None:
    with GatewayProcess(lanes, tmp_path / "store", tmp_path) as gateway:
        with local_broker.paused():
            gateway.wait_ready(False, timeout=20)
            refused = gateway.client.post("/upload_features", json=FORM | {"monthprofit": 1.0})
            assert refused.status_code == 503, refused.text
        gateway.wait_ready(True)
        accepted = gateway.client.post("/upload_features", json=FORM | {"monthprofit": 2.0})
        assert accepted.status_code == 200
    # every acknowledged upload is on the topic; the refused one is not
    keys = [key for key, _ in _read_keys(lanes)]
    assert keys == [accepted.json()["task_id"].encode()]


def test_predict_follows_an_activation(lanes: Lanes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small_model_set(tmp_path / "trained", parent=Manifest.read(DEFAULT_ARTIFACTS_DIR).version)
    store, first, second = store_with_two_sets(tmp_path / "models", tmp_path / "trained")
    monkeypatch.setenv("CRM_SCORER_MODELS__STORE_DIR", str(store.root))  # the gateway's and the command's
    monkeypatch.setenv("CRM_SCORER_MODELS__CONTROL_TOPIC", f"models-{uuid.uuid4().hex[:12]}")
    lead = {version: store.manifest(version).models["lead"].version for version in (first, second)}
    with GatewayProcess(lanes, tmp_path / "store", tmp_path) as gateway:

        def answered_by() -> str:
            answer = gateway.client.post("/api/v1/predict", json=LEAD)
            assert answer.status_code == 200, answer.text
            return str(answer.json()["prediction"]["model_version"])

        assert answered_by() == lead[first]
        assert main(["models", "--bootstrap-servers", lanes.bootstrap, "activate", second]) == 0
        deadline = time.monotonic() + 60
        while (version := answered_by()) != lead[second]:
            assert version == lead[first] and time.monotonic() < deadline, gateway.log[-3000:]
            time.sleep(0.2)
        assert f"predict scores with model set {second} from this batch on (was {first})" in gateway.log


def _read_keys(lanes: Lanes) -> list[tuple[bytes | None, bytes | None]]:
    return [(m.key, m.value) for m in read_all(lanes.bootstrap, lanes.input, idle=1.0)]
