"""The feedback loop on a real broker: scores, the world's outcomes, ``crm-scorer monitor``.

One module-scoped run scores 10,000 world events once; two outcome topics answer the same scores, one with
the baseline world and one where bank_c tightens its policy from event 5,000 on. Printed figures (``-s``)
are the ones docs/outcomes.md quotes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import roc_auc_score

from consumer.monitor.capture import Capture
from consumer.monitor.join import JoinedRow
from consumer.monitor.loop import MonitorLoop
from consumer.monitor.metrics import MonitorMetrics, MonitorState
from consumer.monitor.outbox import StoreOutbox
from consumer.monitor.processor import MonitorCore
from consumer.monitor.quality import ece
from consumer.monitor.settings import MonitorSettings
from consumer.monitor.store import StateStore
from consumer.monitor.windows import Detectors
from producer_tools.publishing.outcomes import answer_scores, world_truth
from producer_tools.publishing.topics import read_all
from producer_tools.world import generate
from producer_tools.world.outcomes import PolicyChange, route
from schemas import ResultDecoder
from tests.integration.faults.support import http_get, telemetry_url
from tests.integration.harness import Lanes, ScorerProcess, encoded, outcome_args, produce
from tests.unit.test_monitor import FakeChanges

EVENTS, SEED, CHANGE_AT = 10_000, 313, 5_000
MONITOR = [sys.executable, "-m", "consumer.commands.cli", "monitor"]


@dataclass(frozen=True)
class Loop:
    """One scoring run and its two outcome topics."""

    bootstrap: str
    applications: str
    scores: str
    outcomes: str
    policy_outcomes: str
    max_feature_psi: float
    scored: list[dict[str, Any]]


@pytest.fixture(scope="module")
def loop(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Loop:
    from producer_tools.publishing.topics import ensure_topics

    tag = uuid.uuid4().hex[:8]
    names = {n: f"monitor-{n}-{tag}" for n in ("in", "scores", "dlq", "outcomes", "policy")}
    ensure_topics(kafka_bootstrap, {names["in"]: 6, names["scores"]: 6, names["dlq"]: 1})
    ensure_topics(kafka_bootstrap, {names["outcomes"]: 6, names["policy"]: 6})
    events = generate(EVENTS, SEED).events
    produce(kafka_bootstrap, names["in"], encoded(events))
    lanes = Lanes(kafka_bootstrap, names["in"], names["scores"], names["dlq"], f"g-{tag}")
    with ScorerProcess(lanes, tmp_path_factory.mktemp("scorer")) as scorer:
        url = telemetry_url(scorer)
        scorer.wait_for(lanes.output, EVENTS, timeout=120)
        psi = _max_feature_psi(url)
        scorer.stop()
    for topic, policy in ((names["outcomes"], None), (names["policy"], PolicyChange("bank_c", CHANGE_AT))):
        tally = answer_scores(outcome_args(kafka_bootstrap, names["scores"], topic, EVENTS, SEED, policy))
        assert tally.scores == EVENTS and tally.unknown == 0 and tally.failed == 0
    decoder = ResultDecoder()
    scored = [decoder.decode(m.value) for m in read_all(kafka_bootstrap, names["scores"], idle=1.0)]
    return Loop(kafka_bootstrap, names["in"], names["scores"], names["outcomes"], names["policy"], psi, scored)


def _max_feature_psi(url: str, timeout: float = 30.0) -> float:
    """The highest ``crm_scorer_feature_psi`` the scorer exports, once its drift windows have one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = http_get(f"{url}/metrics")
        values = [
            sample.value
            for family in text_string_to_metric_families(body)
            if family.name == "crm_scorer_feature_psi"
            for sample in family.samples
        ]
        if values:
            return max(values)
        time.sleep(1.0)
    raise AssertionError("the scorer exported no feature PSI")


def _settings(loop: Loop, outcomes: str, store: Path, **quality: Any) -> MonitorSettings:
    return MonitorSettings(
        kafka={
            "bootstrap_servers": loop.bootstrap,
            "group_id": f"monitor-{uuid.uuid4().hex[:8]}",
            "session_timeout_ms": 6000,
        },
        topics={"scores": loop.scores, "outcomes": outcomes},
        store={"path": store},
        quality={"count_window": 100_000, "evaluate_every_s": 60.0, **quality},
        metrics_port=0,
    )


def _monitor(settings: MonitorSettings) -> MonitorState:
    """Run a monitor in this process until the topics are drained; the figures its store holds."""
    with StateStore(settings.store.path) as store:
        core = MonitorCore(store, settings)
        capture = None
        if settings.capture_dir is not None:  # rows wait in the store, as crm-scorer monitor's do
            capture = Capture(settings.capture_dir, core.event_of, outbox=StoreOutbox(store))
        for _ in range(5):  # a member idle for 2 s on a loaded machine may still be behind: run it on until caught up
            monitor = MonitorLoop(settings, core, MonitorMetrics(CollectorRegistry()), capture)
            monitor.run(until_idle_s=2.0)
            if _caught_up(settings, core):
                break
        return monitor.last_state  # evaluated before the loop left the group (and gave its partitions back)


def _caught_up(settings: MonitorSettings, core: MonitorCore) -> bool:
    """Whether the store's offsets reach the end of every partition of the monitor's topics."""
    from confluent_kafka import Consumer, TopicPartition

    streams = {settings.topics.scores: "scores", settings.topics.outcomes: "outcomes"}
    if settings.topics.applications is not None:
        streams[settings.topics.applications] = "applications"
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "monitor-probe"})
    try:
        for topic, stream in streams.items():
            for partition in range(6):
                _, end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                if end > 0 and (core.start_offset(stream, partition) or 0) < end:
                    return False
        return True
    finally:
        consumer.close()


def _routed_reference(scored: list[dict[str, Any]], policy: PolicyChange | None) -> dict[str, tuple[float, float]]:
    """Per bank, (AUC, ECE) of its scores on the applications routed to it, against the world's own outcomes."""
    truths = world_truth(EVENTS, SEED, "baseline", "v1")
    p: dict[str, list[float]] = {}
    y: dict[str, list[float]] = {}
    for score in scored:
        truth = truths[str(score["event_id"])]
        if policy is not None and truth.index >= policy.from_event:
            continue
        by_bank = {b["bank"]: b["probability"] for b in score["banks"]}
        for bank in route(score["banks"]):
            p.setdefault(bank, []).append(by_bank[bank])
            y.setdefault(bank, []).append(float(truth.truth["banks"][bank]["approved"]))
    return {b: (roc_auc_score(y[b], p[b]), ece(np.array(p[b]), np.array(y[b]))) for b in p}


@dataclass(frozen=True)
class Baseline:
    state: MonitorState
    seconds: float
    capture: Path


@pytest.fixture(scope="module")
def baseline(loop: Loop, tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """An undisturbed monitor over the baseline outcomes (also the reference of the kill -9 test)."""
    folder = tmp_path_factory.mktemp("monitor")
    settings = _settings(loop, loop.outcomes, folder / "store")
    settings = settings.model_copy(update={"capture_dir": folder / "capture"})
    settings.topics.applications = loop.applications  # the events too: captured rows carry them
    started = time.monotonic()
    state = _monitor(settings)
    return Baseline(state, time.monotonic() - started, folder / "capture")


def test_realised_quality_matches_the_routed_applications_offline_and_the_detector_stays_quiet(
    loop: Loop, baseline: Baseline
) -> None:
    state, seconds = baseline.state, baseline.seconds
    counters = state.counters
    joined = sum(v for k, v in counters.items() if k.startswith("joined/"))
    assert joined >= 20_000 and counters["outcomes_duplicate"] > 0 and counters.get("outcomes_unmatched", 0) == 0
    reference = _routed_reference(loop.scored, policy=None)
    for bank, (offline_auc, offline_ece) in sorted(reference.items()):
        realised = state.figures[(bank, "count")]
        print(
            f"{bank}: realised AUC {realised.auc:.3f} (offline on the routed {offline_auc:.3f}, expected from "
            f"predictions {realised.expected_auc:.3f}), ECE {realised.ece:.3f} (offline {offline_ece:.3f}), "
            f"n={realised.outcomes}"
        )
        assert abs(realised.auc - offline_auc) <= 0.02, bank
        assert abs(realised.ece - offline_ece) <= 0.01, bank
        if realised.outcomes >= 2000:  # below that, ECE's own sampling noise is near 0.03
            assert realised.ece <= 0.03, bank
    lead = state.figures[("lead", "count")]
    assert lead.ece <= 0.03 and abs(lead.auc - lead.expected_auc) < 0.02
    assert not any(state.drift_detected.values()) and not any(k.startswith("drift/") for k in counters)
    print(f"monitor: {joined} outcomes joined, {len(loop.scored)} scores, in {seconds:.1f} s (incl. 2 s idle)")


def test_a_bank_tightening_its_policy_fires_its_detector_and_no_other_while_input_psi_stays_low(
    loop: Loop, tmp_path: Path
) -> None:
    assert loop.max_feature_psi < 0.1
    settings = _settings(loop, loop.policy_outcomes, tmp_path / "store", count_window=2000)
    state = _monitor(settings)
    fired = {k.partition("/")[2] for k, v in state.counters.items() if k.startswith("drift/") and v}
    # No other bank's detector fires. Whether bank_c's fires within this run depends on the order the monitor
    # happens to read the six partitions of a topic that already holds every outcome (ADWIN is order-dependent:
    # once in a CI-like run it did not); fed in event order, as a live stream has them, it must (below).
    assert fired <= {"bank_c"}, fired
    changed = state.figures[("bank_c", "count")]
    assert changed.ece > 0.1 and changed.observed_rate < changed.predicted_rate - 0.1
    assert changed.expected_auc - changed.auc > 0.02  # the predictions alone expect better than what happens
    for bank in ("bank_b", "bank_d"):
        assert state.figures[(bank, "count")].ece < 0.03, bank
    # How many outcomes past the change it takes, in the order a live stream has them (by the event they
    # answer; with every outcome already on the topic, the monitor reads it partition by partition): the
    # monitor's own detector over bank_c's stored rows.
    past = _outcomes_to_fire(settings, "bank_c")
    print(
        f"policy change: input PSI max {loop.max_feature_psi:.3f}; bank_c's detector fires {past} of its outcomes "
        f"past the change; count-window AUC {changed.auc:.3f} vs expected {changed.expected_auc:.3f}, ECE "
        f"{changed.ece:.3f}, observed {changed.observed_rate:.3f} vs predicted {changed.predicted_rate:.3f}"
    )
    assert past is not None and past <= 1000


def _outcomes_to_fire(settings: MonitorSettings, bank: str) -> int | None:
    """How many of ``bank``'s outcomes past the change its detector needs, fed in event order."""
    index = {eid: t.index for eid, t in world_truth(EVENTS, SEED, "baseline", "v1").items()}
    with StateStore(settings.store.path) as store:
        prefixes = [b"p%04d/row/%s/" % (p, bank.encode()) for p in range(6)]
        rows = [JoinedRow(**json.loads(v)) for prefix in prefixes for _, v in store.scan(prefix, prefix + b"\xff")]
    rows.sort(key=lambda row: index[row.score_event_id])
    detectors, changes = Detectors(settings.detector.min_instances, settings.detector.delta), FakeChanges()
    past = 0
    for row in rows:
        past += index[row.score_event_id] >= CHANGE_AT
        if detectors.update(changes, [row]):
            return past if past else None
    return None


def test_a_monitor_killed_mid_stream_recovers_to_the_figures_of_an_undisturbed_run(
    loop: Loop, baseline: Baseline, tmp_path: Path
) -> None:
    undisturbed = baseline.state
    settings = _settings(loop, loop.outcomes, tmp_path / "killed")
    args = _monitor_args(loop, settings, "--until-idle", "2")
    log = tmp_path / "monitor.log"
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=MONITOR_ENV)
        _wait_for_progress(settings.store.path, process, log)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        killed_at = _stored_offsets(settings.store.path)
        finished = subprocess.run(args, stdout=subprocess.PIPE, stderr=out, env=MONITOR_ENV, timeout=120, check=True)
    recovered = _stored_state(settings)
    print(f"kill -9 after {sum(killed_at.values())} messages stored; after restart: {finished.stdout.decode().strip()}")
    assert 0 < sum(killed_at.values()) < sum(_stored_offsets(settings.store.path).values())
    assert recovered.counters == undisturbed.counters
    assert _figures(recovered) == _figures(undisturbed)


def test_a_second_monitor_stands_by_and_takes_over_with_the_figures_of_one(
    loop: Loop, baseline: Baseline, tmp_path: Path
) -> None:
    # One writer: the second monitor of a group waits (not ready, crm_monitor_standby 1) while the first writes, and
    # takes the whole group over once the first is gone (here kill -9: its session expires); what it then reports
    # is what one undisturbed monitor reports, not a half of it.
    settings = _settings(loop, loop.outcomes, tmp_path / "first")
    second_store = tmp_path / "second"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with first_log.open("wb") as first_out, second_log.open("wb") as second_out:
        first = subprocess.Popen(
            _monitor_args(loop, settings), stdout=first_out, stderr=subprocess.STDOUT, env=MONITOR_ENV
        )
        try:
            _wait_for_progress(settings.store.path, first, first_log)
            second_args = _monitor_args(loop, settings, "--until-idle", "3", store=second_store)
            second = subprocess.Popen(second_args, stdout=second_out, stderr=subprocess.STDOUT, env=MONITOR_ENV)
            _wait_for_line(second_log, "monitor standing by", second)
            time.sleep(6.0)  # a standby stays one: it never joins while the writer is in the group
            assert "assigned partitions" not in second_log.read_text(), second_log.read_text()
            assert "owns" not in first_log.read_text(), "the writer kept every partition"
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        assert second.wait(120) == 0, second_log.read_text()
    text = second_log.read_text()
    assert "monitor taking over" in text and "assigned partitions [0, 1, 2, 3, 4, 5]" in text, text
    took_over = _stored_state(
        settings.model_copy(update={"store": settings.store.model_copy(update={"path": second_store})})
    )
    assert took_over.counters == baseline.state.counters
    assert _figures(took_over) == _figures(baseline.state)


MONITOR_ENV = os.environ | {
    "CRM_MONITOR_QUALITY__COUNT_WINDOW": "100000",
    "CRM_MONITOR_KAFKA__SESSION_TIMEOUT_MS": "6000",
}


def _monitor_args(loop: Loop, settings: MonitorSettings, *extra: str, store: Path | None = None) -> list[str]:
    """``crm-scorer monitor`` on the loop's scores and baseline outcomes, in ``settings``' group."""
    return [
        *MONITOR,
        "--bootstrap-servers",
        loop.bootstrap,
        "--group-id",
        settings.kafka.group_id,
        "--scores-topic",
        loop.scores,
        "--outcomes-topic",
        loop.outcomes,
        "--store-path",
        str(store or settings.store.path),
        "--metrics-port",
        "0",
        *extra,
    ]


def _wait_for_line(log: Path, line: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        if line in log.read_text():
            return
        time.sleep(0.2)
    raise AssertionError(f"{line!r} not logged within {timeout} s:\n{log.read_text()}")


def _figures(state: MonitorState) -> dict[tuple[str, str], tuple[float, ...]]:
    """Every figure, NaN as None (NaN != NaN would fail two equal runs)."""
    return {
        key: tuple(None if isinstance(v, float) and math.isnan(v) else v for v in vars(q).values())
        for key, q in state.figures.items()
    }


def _wait_for_progress(store: Path, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    """Until the monitor's log says it was assigned and a second has passed: mid-stream, not at its end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        if "assigned partitions" in log.read_text():
            time.sleep(1.0)
            return
        time.sleep(0.1)
    raise AssertionError(f"the monitor was not assigned within {timeout} s:\n{log.read_text()}")


def _stored_offsets(path: Path) -> dict[bytes, int]:
    with StateStore(path) as store:
        return {k: int(v) for p in range(6) for k, v in store.scan(b"p%04d/off/" % p, b"p%04d/off0" % p)}


def _stored_state(settings: MonitorSettings) -> MonitorState:
    with StateStore(settings.store.path) as store:
        core = MonitorCore(store, settings)
        core.assigned(range(6))
        return core.state()


def test_every_joined_row_is_captured_with_the_event_as_scored_and_its_routing(loop: Loop, baseline: Baseline) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(baseline.capture)  # the date=... folders read as one dataset
    rows = table.to_pylist()
    joined = sum(v for k, v in baseline.state.counters.items() if k.startswith("joined/"))
    assert len(rows) == joined and len({r["outcome_id"] for r in rows}) == joined
    events = {str(e["event_id"]): e for e in generate(EVENTS, SEED).events}
    # A row whose event the monitor had not read yet when it stopped is written without it (docs/outcomes.md).
    with_event = [r for r in rows if r["event"] is not None]
    assert len(with_event) >= 0.95 * len(rows)
    for row in with_event[:: max(1, len(with_event) // 500)]:
        event = json.loads(row["event"])
        assert event["event_id"] == row["score_event_id"] == str(events[row["score_event_id"]]["event_id"])
        assert event["application_id"] == row["application_id"]
        assert (row["routing"] is None) == (row["model"] == "lead")
    files = len(list(baseline.capture.rglob("*.parquet")))
    print(f"captured {len(rows)} rows ({len(with_event)} with their event) in {files} Parquet files")
