"""Observability end to end: the scorer on a real broker, its /metrics, health endpoints, and a real Prometheus
evaluating every dashboard query and alert rule against it."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from producer_tools import world
from producer_tools.demos.stack import local_prometheus_config
from producer_tools.publishing.publisher import PublishSummary, event_encoders, publish_events
from producer_tools.servers.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
SHIFTED = ("income", "goods_category", "job_tenure_years", "lead_source")  # PSI > 0.25 by the drift scenario
UNSHIFTED = ("childcount", "gender", "education_rank", "age_years", "loan_term")


class Scorer:
    """``crm-scorer run`` as a subprocess with its metrics on a free loopback port."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process, self.port, self.log_path = process, port, log_path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read().decode()

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        status, text = self.get("/metrics")
        assert status == 200
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, frozenset(labels.items())))

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.metrics().items() if n == name)

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def wait_until(check: Callable[[], Any], timeout: float, what: str, scorer: Scorer | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (urllib.error.URLError, ConnectionError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            tail = f"\nscorer log:\n{scorer.log_tail()}" if scorer else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{tail}")
        time.sleep(0.3)


@pytest.fixture
def start_scorer(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., Scorer]]:
    started: list[Scorer] = []

    def start(input_topic: str, output_topic: str, dlq_topic: str, group: str, workers: int = 1) -> Scorer:
        port = free_port()
        log_path = tmp_path / f"scorer-{len(started)}.log"
        env = os.environ | {
            "CRM_SCORER_CONSUMER__SESSION_TIMEOUT_MS": "6000",  # as the harness: a dead member is noticed sooner
            "CRM_SCORER_METRICS__DRIFT_INTERVAL_S": "1",
            "CRM_SCORER_METRICS__HOST": "127.0.0.1",
        }
        flags = {
            "--config": str(CONFIGS / "scorer.yaml"),
            "--bootstrap-servers": kafka_bootstrap,
            "--input-topic": input_topic,
            "--output-topic": output_topic,
            "--dlq-topic": dlq_topic,
            "--group-id": group,
            "--metrics-port": str(port),
            "--workers": str(workers),
        }
        command = [sys.executable, "-m", "consumer.commands.cli", "run", *itertools.chain(*flags.items())]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        scorer = Scorer(process, port, log_path)
        started.append(scorer)
        wait_until(lambda: scorer.get("/healthz")[0] == 200, 30, "/healthz", scorer)
        return scorer

    yield start
    for scorer in started:
        scorer.process.send_signal(signal.SIGTERM)
    for scorer in started:
        try:
            scorer.process.wait(30)
        except subprocess.TimeoutExpired:
            scorer.process.kill()
            scorer.process.wait()


def produce(bootstrap: str, topic: str, count: int, seed: int, scenario: str, bad_ratio: float = 0.0) -> PublishSummary:
    # Events that happened just now: latency is real, and ages and tenures (measured against the event's own
    # date) stay as the world draws them, which stamping live times onto old events would not keep.
    rate = 5000.0
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=count / rate)
    events = world.generate(count, seed, scenario=scenario, start=start, events_per_second=rate).events
    summary = publish_events(bootstrap, topic, events, encoders=event_encoders("mixed"), bad_ratio=bad_ratio, seed=seed)
    assert summary.failed == 0, summary.first_error
    return summary


def wait_until_settled(scorer: Scorer, messages: int) -> None:
    """Every message consumed and every one of them acknowledged as a result or a dead letter."""

    def settled() -> bool:
        consumed = scorer.value("crm_scorer_events_consumed_total") or 0
        published = scorer.value("crm_scorer_results_published_total") or 0
        return consumed == messages and published + scorer.total("crm_scorer_dead_letters_total") == consumed

    wait_until(settled, 60, f"{messages} messages consumed and acknowledged", scorer)


def wait_for_fresh_drift(scorer: Scorer) -> None:
    since = time.time()
    wait_until(
        lambda: (scorer.value("crm_scorer_drift_evaluated_timestamp_seconds") or 0) > since + 0.5,
        15,
        "a drift evaluation after the last batch",
        scorer,
    )


def test_drift_scenario_crosses_the_thresholds_and_counters_balance(
    kafka_bootstrap: str, make_topic: Callable[..., str], unique_group: Callable[[], str], start_scorer: Callable
) -> None:
    source = make_topic(partitions=2)
    scorer = start_scorer(source, make_topic(), make_topic(), unique_group(), workers=2)
    wait_until(lambda: scorer.get("/readyz")[0] == 200, 60, "/readyz with two workers", scorer)

    baseline = produce(kafka_bootstrap, source, 4000, seed=31, scenario="baseline", bad_ratio=0.02)
    wait_until_settled(scorer, baseline.sent + baseline.bad)
    wait_for_fresh_drift(scorer)
    for feature in (*SHIFTED, *UNSHIFTED):
        assert scorer.value("crm_scorer_feature_psi", feature=feature, window="short") < 0.1, feature

    drift = produce(kafka_bootstrap, source, 1500, seed=32, scenario="drift")
    messages = baseline.sent + baseline.bad + drift.sent
    wait_until_settled(scorer, messages)
    wait_for_fresh_drift(scorer)
    m = scorer.metrics()

    def psi(feature: str, window: str = "short") -> float:
        return m[("crm_scorer_feature_psi", frozenset({"feature": feature, "window": window}.items()))]

    for feature in SHIFTED:
        assert psi(feature) > 0.25, feature
    for feature in UNSHIFTED:
        assert psi(feature) < 0.1, feature
    assert psi("income", "long") < psi("income")  # the long window still holds the baseline
    assert scorer.value("crm_scorer_prediction_psi", model="bank_c", window="short") > 0.25
    assert scorer.value("crm_scorer_feature_missing_ratio", feature="job_tenure_years", window="short") > 0.4

    # Counters agree with what was produced: every message ends as a result or a dead letter, by reason.
    assert scorer.value("crm_scorer_events_consumed_total") == messages
    expected = baseline.expected_outcomes() + drift.expected_outcomes()
    assert scorer.value("crm_scorer_results_published_total") == expected.pop("scored")
    for reason, count in expected.items():
        assert scorer.value("crm_scorer_dead_letters_total", reason=reason) == count, reason
    assert scorer.total("crm_scorer_dead_letters_total") == sum(expected.values())
    published = scorer.value("crm_scorer_results_published_total")
    assert scorer.value("crm_scorer_end_to_end_latency_seconds_count") == published
    assert scorer.value("crm_scorer_end_to_end_latency_seconds_bucket", le="60.0") == published
    assert scorer.value("crm_scorer_workers") == 2
    assert scorer.value("crm_scorer_assigned_partitions") == 2


# --- a real Prometheus -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus_bin() -> Path:
    """Prometheus and promtool, installed from Debian's packages by the project's script when absent."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "install-prometheus.sh")], capture_output=True, text=True)
    if result.returncode == 3:
        pytest.skip(f"cannot install Prometheus on this machine: {result.stderr.strip()}")
    assert result.returncode == 0, f"scripts/install-prometheus.sh failed:\n{result.stdout}\n{result.stderr}"
    prometheus = shutil.which("prometheus")
    assert prometheus is not None and shutil.which("promtool") is not None
    return Path(prometheus)


def test_promtool_accepts_the_rules_and_the_config(prometheus_bin: Path) -> None:
    for command in (["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"]):
        result = subprocess.run(["promtool", *command], cwd=CONFIGS, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


class Prometheus:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.base}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return json.loads(exc.read())

    def query(self, expr: str) -> Any:
        return self.api("query", query=expr)


@pytest.fixture
def start_prometheus(prometheus_bin: Path, tmp_path: Path) -> Iterator[Callable[[int], Prometheus]]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(scorer_port: int) -> Prometheus:
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(local_prometheus_config([f"127.0.0.1:{scorer_port}"], "1s")))
        port = free_port()
        command = [
            str(prometheus_bin),
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
        with (tmp_path / "prometheus.log").open("wb") as log:
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        prometheus = Prometheus(port)
        wait_until(
            lambda: urllib.request.urlopen(f"{prometheus.base}/-/ready", timeout=2).status == 200,
            30,
            "Prometheus to be ready",
        )
        return prometheus

    yield start
    for process in processes:
        process.terminate()
        process.wait(15)


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard target, Grafana's variables replaced by test values."""
    dashboard = json.loads((CONFIGS / "grafana" / "dashboard.json").read_text())
    values = {"__rate_interval": "1m", "window": "short", "model": "bank_a"}
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], target["expr"])
            queries.append((panel["title"], expr))
    return queries


MAIN_PANELS = {
    "Throughput",
    "End-to-end latency",
    "Consumer lag",
    "Dead letters by reason",
    "Cost per event by stage",
    "Approval rate per bank",
    "Score distribution: $model",
    "Feature drift ($window window)",
    "Prediction drift ($window window)",
    "Model versions",
    "Ready",
    "Assigned partitions",
}


def test_prometheus_evaluates_every_dashboard_query_and_alert_rule(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    unique_group: Callable[[], str],
    start_scorer: Callable,
    start_prometheus: Callable[[int], Prometheus],
) -> None:
    source = make_topic(partitions=2)
    scorer = start_scorer(source, make_topic(), make_topic(), unique_group())
    prometheus = start_prometheus(scorer.port)
    wait_until(lambda: scorer.get("/readyz")[0] == 200, 60, "/readyz", scorer)
    wait_until(lambda: prometheus.query("crm_scorer_ready == 1")["data"]["result"], 15, "a scrape of the ready scorer")
    baseline = produce(kafka_bootstrap, source, 1500, seed=41, scenario="baseline", bad_ratio=0.05)
    drift = produce(kafka_bootstrap, source, 1200, seed=42, scenario="drift")
    wait_until_settled(scorer, baseline.sent + baseline.bad + drift.sent)
    wait_until(
        lambda: scorer.value("crm_scorer_consumer_lag", topic=source, partition="0") is not None,
        30,
        "consumer lag from librdkafka statistics",
        scorer,
    )
    wait_until(lambda: prometheus.query("crm_scorer_consumer_lag")["data"]["result"], 15, "lag in Prometheus")
    # Drift is computed on the scorer's own timer and scraped on Prometheus's: the last batch settled says
    # nothing about either having run since (a CI run asserted a moment before both had).
    wait_until(
        lambda: prometheus.query('crm_scorer_prediction_psi{window="short"}')["data"]["result"],
        30,
        "drift of the short window in Prometheus",
    )

    _assert_every_dashboard_query_answers(prometheus)
    _assert_every_alert_rule_evaluates(prometheus)

    def critical_drift_alert() -> bool:
        alerts = prometheus.api("alerts")["data"]["alerts"]
        wanted = {"alertname": "FeatureDriftCritical", "feature": "goods_category"}
        return any(wanted.items() <= a["labels"].items() for a in alerts)

    psi = prometheus.query('crm_scorer_feature_psi{window="short", feature="goods_category"}')["data"]["result"]
    wait_until(critical_drift_alert, 20, f"FeatureDriftCritical pending for goods_category (PSI now {psi})")
    up = prometheus.query('up{job="crm-scorer"}')["data"]["result"]
    assert [r["value"][1] for r in up] == ["1"]


def _assert_every_dashboard_query_answers(prometheus: Prometheus) -> None:
    """Prometheus accepts every panel's query, and each main panel shows a number."""
    failures, empty = [], []
    for title, expr in dashboard_queries():
        answer = prometheus.query(expr)
        if answer["status"] != "success":
            failures.append(f"{title}: {expr}: {answer.get('error')}")
        elif title in MAIN_PANELS and not any(_has_number(r) for r in answer["data"]["result"]):
            empty.append(f"{title}: {expr}")
    assert not failures, "dashboard queries Prometheus rejects:\n" + "\n".join(failures)
    assert not empty, "main panels without data:\n" + "\n".join(empty)
    assert {title for title, _ in dashboard_queries()} >= MAIN_PANELS


def _assert_every_alert_rule_evaluates(prometheus: Prometheus) -> None:
    """Prometheus loaded every rule of alerts.yml and evaluates each without an error."""
    rules = wait_until(lambda: _evaluated_rules(prometheus), 20, "every alert rule evaluated")
    alerting = yaml.safe_load((CONFIGS / "alerts.yml").read_text())
    assert len(rules) == sum(len(group["rules"]) for group in alerting["groups"])
    broken = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
    assert not broken, "alert rules failing to evaluate:\n" + "\n".join(broken)
    for rule in rules:
        assert prometheus.query(rule["query"])["status"] == "success", rule["name"]


def _has_number(result: dict[str, Any]) -> bool:
    return not math.isnan(float(result["value"][1]))


def _evaluated_rules(prometheus: Prometheus) -> list[dict[str, Any]] | None:
    groups = prometheus.api("rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    if rules and all(not rule["lastEvaluation"].startswith("0001") for rule in rules):
        return rules
    return None
