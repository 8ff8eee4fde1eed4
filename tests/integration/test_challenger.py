"""The challenger, promotion and the rollback rule on a real broker.

A scorer (exactly_once) serves the committed set; a deliberately worse set (trained on shuffled labels) shadows
bank_c through `crm-scorer models shadow`; the monitor joins its scores beside the champion's as outcomes come;
`crm-scorer models promote --force` makes the worse set live; the monitor's rollback rule sees its realised AUC
fall below its predecessor's over enough outcomes and rolls back through the control topic. Every event has one
result (nothing lost, no duplicate) and each phase's results carry the versions of the set live then.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from consumer.commands.cli import main
from consumer.monitor.loop import MonitorLoop
from consumer.monitor.metrics import MonitorMetrics, MonitorState
from consumer.monitor.processor import MonitorCore
from consumer.monitor.rollback import rule_of
from consumer.monitor.settings import MonitorSettings
from consumer.monitor.store import StateStore
from models import train as training
from models.config import DEFAULT_ARTIFACTS_DIR, ModelsConfig
from models.store import ModelStore
from producer_tools.publishing.outcomes import answer_scores, world_truth
from producer_tools.publishing.topics import ensure_topics, read_all
from producer_tools.world import generate
from schemas import ResultDecoder
from tests.integration.harness import CATALOG, Lanes, ScorerProcess, encoded, produce
from tests.model_sets import TREES

RESULTS = ResultDecoder(CATALOG)
EVENTS, SEED = 3600, 4242
MODELS = ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e", "lead"]


def worse_model_set(out_dir: Path) -> str:
    """The committed set with bank_c trained on shuffled labels (it ranks at random); every other file the same."""
    batch = generate(2000, 17)
    truth = list(batch.truth)
    random.Random(3).shuffle(truth)
    data = training.LabelledEvents.from_truth(batch.events, truth)
    trained = out_dir.parent / "shuffled"
    with mock.patch.object(training, "MAX_TREES", TREES):
        lineage = {"source": "synthetic world, labels shuffled", "events": 2000, "seed": 17}
        training.train(data, ModelsConfig(), trained, 17, folds=2, log=lambda _: None, lineage=lineage)
    shutil.copytree(DEFAULT_ARTIFACTS_DIR, out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    entry = json.loads((trained / "manifest.json").read_text())["models"]["bank_c"]
    shutil.copyfile(trained / entry["file"], out_dir / entry["file"])
    manifest["models"]["bank_c"] = entry
    manifest["version"], manifest["parent"] = "worse-bank-c", manifest["version"]
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return str(manifest["version"])


@pytest.fixture
def lanes(kafka_bootstrap: str, unique_group: Callable[[], str]) -> Lanes:
    tag = uuid.uuid4().hex[:8]
    names = {n: f"challenger-{n}-{tag}" for n in ("in", "scores", "dlq", "outcomes")}
    ensure_topics(kafka_bootstrap, {names["in"]: 3, names["scores"]: 3, names["dlq"]: 1, names["outcomes"]: 3})
    return Lanes(kafka_bootstrap, names["in"], names["scores"], names["dlq"], unique_group())


@pytest.fixture
def store(tmp_path: Path) -> tuple[ModelStore, str, str]:
    models = ModelStore(tmp_path / "store")
    first = models.add(DEFAULT_ARTIFACTS_DIR)
    worse_model_set(tmp_path / "worse")
    worse = models.add(tmp_path / "worse")
    models.activate(first, MODELS, "test", "start")
    return models, first, worse


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, lanes: Lanes, store: tuple[ModelStore, str, str]) -> dict[str, str]:
    tag = uuid.uuid4().hex[:12]
    values = {
        "CRM_SCORER_MODELS__STORE_DIR": str(store[0].root),
        "CRM_SCORER_MODELS__CONTROL_TOPIC": f"models-{tag}",
        "CRM_SCORER_MODELS__SHADOW_TOPIC": f"shadow-{tag}",
        "CRM_SCORER_TOPICS__OUTPUT": lanes.output,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@contextlib.contextmanager
def monitoring(settings: MonitorSettings) -> Iterator[tuple[MonitorLoop, str]]:
    """The monitor with its rollback rule, in a thread of this process; yields it and its metrics URL."""
    metrics = MonitorMetrics(CollectorRegistry())
    server, _ = start_http_server(0, "127.0.0.1", registry=metrics.registry)
    with StateStore(settings.store.path) as state:
        loop = MonitorLoop(settings, MonitorCore(state, settings, None, rule_of(settings)), metrics)
        thread = threading.Thread(target=loop.run, name="monitor", daemon=True)
        thread.start()
        try:
            yield loop, f"http://127.0.0.1:{server.server_address[1]}/metrics"
        finally:
            loop.stop()
            thread.join(30)
            server.shutdown()
            server.server_close()


@contextlib.contextmanager
def answering(lanes: Lanes, outcomes: str) -> Iterator[None]:
    """The world's outcomes of every score, published as the scores come (no delay)."""
    args = argparse.Namespace(
        bootstrap_servers=lanes.bootstrap,
        scores_topic=lanes.output,
        topic=outcomes,
        count=EVENTS,
        seed=SEED,
        scenario="baseline",
        schema_version="v2",
        time_scale=0.0,
        missing=0.0,
        duplicates=0.0,
        policy_change=None,
        idle_exit=600.0,
        max_scores=None,
    )
    stop = threading.Event()
    truths = world_truth(EVENTS, SEED, "baseline", "v2")
    thread = threading.Thread(target=answer_scores, args=(args, truths, stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def models(lanes: Lanes, *args: str) -> int:
    return main(["models", "--bootstrap-servers", lanes.bootstrap, *args])


def test_a_worse_model_is_promoted_and_rolled_back_by_the_rule(
    lanes: Lanes,
    store: tuple[ModelStore, str, str],
    env: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model_store, first, worse = store
    events = [dict(t.event) for t in world_truth(EVENTS, SEED, "baseline", "v2").values()]
    phases = [encoded(events[:1200]), encoded(events[1200:3000]), encoded(events[3000:])]
    settings = monitor_settings(lanes, env, model_store.root, tmp_path / "monitor")
    with contextlib.ExitStack() as stack:
        scorer = stack.enter_context(ScorerProcess(lanes, tmp_path, "--guarantee", "exactly_once", env=env))
        scorer.wait_for_log("follows model-set activations on", timeout=60)
        assert models(lanes, "shadow", worse, "--model", "bank_c", "--reason", "test") == 0
        scorer.wait_for_log(f"scores with challenger set {worse} (bank_c) from this batch on", timeout=60)
        monitor, url = stack.enter_context(monitoring(settings))  # its topics exist now, the shadow topic too
        stack.enter_context(answering(lanes, settings.topics.outcomes))
        produce(lanes.bootstrap, lanes.input, phases[0])
        scorer.wait_for(lanes.output, 1200, timeout=120)
        side_by_side = wait_for_state(
            monitor, lambda s: ("bank_c:challenger", "count") in s.figures, lanes, settings.topics
        )
        assert models(lanes, "promote", "bank_c", "--monitor", url, "--force", "--reason", "deliberately worse") == 0
        scorer.wait_for_log(f"scores with model set {worse} from this batch on", timeout=60)
        produce(lanes.bootstrap, lanes.input, phases[1])
        scorer.wait_for_log(f"scores with model set {first} from this batch on (was {worse}", timeout=180)
        produce(lanes.bootstrap, lanes.input, phases[2])
        scorer.wait_for(lanes.output, EVENTS, timeout=120)
        scorer.stop()
    rule_line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("rollback rule: "))
    report(side_by_side, rule_line)
    assert_phases(lanes, model_store, first, worse, events)


def assert_phases(lanes: Lanes, model_store: ModelStore, first: str, worse: str, events: list[Any]) -> None:
    """One result per event; the committed bank_c before the promotion and after the rollback; the record."""
    by_event = versions_by_event(lanes)
    assert len(by_event) == EVENTS and all(len(v) == 1 for v in by_event.values()), "nothing lost, no duplicate"
    bank_c = {name: model_store.manifest(name).models["bank_c"].version for name in (first, worse)}
    assert {by_event[e["event_id"]][0] for e in events[:1200]} == {bank_c[first]}
    assert {by_event[e["event_id"]][0] for e in events[3000:]} == {bank_c[first]}, "rolled back"
    assert bank_c[worse] in {by_event[e["event_id"]][0] for e in events[1200:3000]}
    history = model_store.history()
    assert [h["action"] for h in history] == ["activate", "promote", "rollback"]
    assert history[-1]["by"] == "crm-scorer monitor" and history[-1]["reason"].startswith("rollback rule: bank_c ")
    assert model_store.active() == first


def monitor_settings(lanes: Lanes, env: dict[str, str], store: Path, path: Path) -> MonitorSettings:
    topics = {"scores": lanes.output, "outcomes": lanes.output.replace("scores", "outcomes")}
    return MonitorSettings(
        kafka={
            "bootstrap_servers": lanes.bootstrap,
            "group_id": f"monitor-{uuid.uuid4().hex[:8]}",
            "session_timeout_ms": 6000,
        },
        topics=topics | {"shadow": env["CRM_SCORER_MODELS__SHADOW_TOPIC"]},
        store={"path": path},
        quality={"count_window": 5000, "evaluate_every_s": 1.0, "min_outcomes": 50},
        lifecycle={
            "store_dir": store,
            "control_topic": env["CRM_SCORER_MODELS__CONTROL_TOPIC"],
            "rollback_min_outcomes": 100,
            "promote_min_outcomes": 100,
        },
        metrics_port=0,
    )


def wait_for_state(
    monitor: MonitorLoop, ready: Callable[[MonitorState], bool], lanes: Lanes, topics: Any, timeout: float = 120.0
) -> MonitorState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready(monitor.last_state):
            return monitor.last_state
        time.sleep(0.5)
    read = {t: len(read_all(lanes.bootstrap, t, idle=1.0)) for t in (topics.scores, topics.outcomes, topics.shadow)}
    state = monitor.last_state
    raise AssertionError(f"the monitor's state never got there: {sorted(state.figures)} {state.counters} {read}")


def versions_by_event(lanes: Lanes) -> dict[str, list[str]]:
    """Each result's bank_c model version, by event id (a list: a duplicate would show)."""
    out: dict[str, list[str]] = {}
    for message in read_all(lanes.bootstrap, lanes.output, idle=1.0):
        r: dict[str, Any] = RESULTS.decode(message.value)
        version = next(b["model_version"] for b in r["banks"] if b["bank"] == "bank_c")
        out.setdefault(str(r["event_id"]), []).append(version)
    return out


def report(shadowed: MonitorState, rule_line: str) -> None:
    """The figures the docs quote (-s)."""
    for model in ("bank_c", "bank_c:challenger"):
        q = shadowed.figures[(model, "count")]
        print(f"\n{model}: AUC {q.auc:.4f} Brier {q.brier:.4f} ECE {q.ece:.4f} over {q.outcomes} outcomes", end="")
    print(f"\npaired: {shadowed.paired.get('bank_c')}\n{rule_line}", end="")
