"""Hot reload on a real broker: `crm-scorer models activate|rollback` reach every worker of every running scorer
through the control topic, between two batches; a tampered set is refused while the running one scores on.

Each test has its own topics, group, control topic and model store: the committed set (active at start) and a
small set trained for the test.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consumer.commands.cli import main
from consumer.kafka.model_control import publish_activation
from models.config import DEFAULT_ARTIFACTS_DIR
from models.manifest import Manifest
from models.store import Activation, ModelStore
from producer_tools.publishing.topics import read_all
from producer_tools.world import generate
from schemas import ResultDecoder
from tests.integration.harness import CATALOG, Lanes, ScorerProcess, encoded, produce
from tests.model_sets import flip_a_byte, small_model_set, store_with_two_sets

RESULTS = ResultDecoder(CATALOG)
Versions = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "set"
    small_model_set(out, parent=Manifest.read(DEFAULT_ARTIFACTS_DIR).version)
    return out


@pytest.fixture
def lanes(kafka_bootstrap: str, make_topic: Callable[..., str], unique_group: Callable[[], str]) -> Lanes:
    return Lanes(kafka_bootstrap, make_topic(6, "in"), make_topic(3, "out"), make_topic(1, "dlq"), unique_group())


@pytest.fixture
def store(tmp_path: Path, trained: Path) -> tuple[ModelStore, str, str]:
    return store_with_two_sets(tmp_path / "store", trained)


@pytest.fixture
def control(monkeypatch: pytest.MonkeyPatch, store: tuple[ModelStore, str, str]) -> dict[str, str]:
    """The scorers' and the command's environment: the store and a control topic of the test's own (the first
    activation creates it)."""
    env = {
        "CRM_SCORER_MODELS__STORE_DIR": str(store[0].root),
        "CRM_SCORER_MODELS__CONTROL_TOPIC": f"models-{uuid.uuid4().hex[:12]}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def models(lanes: Lanes, *args: str) -> int:
    return main(["models", "--bootstrap-servers", lanes.bootstrap, *args])


def set_versions(store: ModelStore, version: str) -> Versions:
    manifest = store.manifest(version)
    return (
        ("lead", manifest.models["lead"].version),
        *((b, manifest.models[b].version) for b in sorted(manifest.models) if b != "lead"),
    )


def results(lanes: Lanes) -> dict[str, list[Versions]]:
    """Every result's model versions, by event id (a list: at_least_once may publish one twice)."""
    out: dict[str, list[Versions]] = {}
    for message in read_all(lanes.bootstrap, lanes.output, idle=1.0):
        r = RESULTS.decode(message.value)
        banks = tuple(sorted((b["bank"], b["model_version"]) for b in r["banks"]))
        out.setdefault(str(r["event_id"]), []).append((("lead", r["lead"]["model_version"]), *banks))
    return out


@pytest.fixture
def start_scorers(
    lanes: Lanes, control: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., list[ScorerProcess]]]:
    """Factory: ``start_scorers(guarantee, count)`` runs ``count`` replicas following the test's store."""
    with contextlib.ExitStack() as stack:

        def start(guarantee: str, count: int) -> list[ScorerProcess]:
            scorers = [ScorerProcess(lanes, tmp_path, "--guarantee", guarantee, env=control) for _ in range(count)]
            for scorer in scorers:
                stack.enter_context(scorer)
            for scorer in scorers:  # serving the store's active set: an activation from now on is a change
                scorer.wait_for_log("follows model-set activations on", timeout=60)
            return scorers

        yield start


def swapped(scorers: list[ScorerProcess], version: str) -> None:
    for scorer in scorers:
        scorer.wait_for_log(f"scores with model set {version} from this batch on", timeout=60)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_two_replicas_follow_one_activation_under_load(
    lanes: Lanes, store: tuple[ModelStore, str, str], start_scorers: Callable[..., list[ScorerProcess]], guarantee: str
) -> None:
    model_store, first, second = store
    replicas = start_scorers(guarantee, 2)
    events = generate(2400, seed=77).events
    phases = [encoded(events[:800]), encoded(events[800:1600]), encoded(events[1600:])]
    produce(lanes.bootstrap, lanes.input, phases[0])
    replicas[0].wait_for(lanes.output, 800)
    loading = threading.Thread(target=produce, args=(lanes.bootstrap, lanes.input, phases[1]))
    loading.start()  # the activation lands while events flow
    assert models(lanes, "activate", second, "--reason", "test") == 0
    loading.join()
    swapped(replicas, second)
    produce(lanes.bootstrap, lanes.input, phases[2])
    replicas[0].wait_for(lanes.output, len(events))
    for scorer in replicas:
        scorer.stop()
    by_event = results(lanes)
    old, new = set_versions(model_store, first), set_versions(model_store, second)
    assert set(by_event) == {e["event_id"] for e in events}, "nothing lost"
    if guarantee == "exactly_once":
        assert all(len(v) == 1 for v in by_event.values()) and len(by_event) == len(events), "no duplicate"
    assert {v for e in events[:800] for v in by_event[e["event_id"]]} == {old}
    assert {v for e in events[1600:] for v in by_event[e["event_id"]]} == {new}
    assert {v for vs in by_event.values() for v in vs} == {old, new}, "every result scored by one whole set"


def test_a_tampered_set_is_refused_while_the_running_one_scores_and_a_rollback_returns(
    lanes: Lanes,
    store: tuple[ModelStore, str, str],
    start_scorers: Callable[..., list[ScorerProcess]],
    control: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_store, first, second = store
    replicas = start_scorers("at_least_once", 1)
    (scorer,) = replicas
    assert models(lanes, "activate", second) == 0
    swapped(replicas, second)
    record = Activation(first, model_store.manifest_sha256(first), "2026-12-06T20:00:00Z", "test", "forged")
    flip_a_byte(model_store.directory(first) / "bank_c.ubj")
    capsys.readouterr()
    assert models(lanes, "rollback") == 2, "the command verifies first"
    assert "bank_c file bank_c.ubj sha256 does not match" in capsys.readouterr().err
    assert model_store.active() == second, "nothing changed"
    producer_conf = {"bootstrap.servers": lanes.bootstrap}
    publish_activation(producer_conf, control["CRM_SCORER_MODELS__CONTROL_TOPIC"], "default", record)
    scorer.wait_for_log(f"refused, still scoring with model set {second}")
    events = generate(300, seed=78).events
    produce(lanes.bootstrap, lanes.input, encoded(events[:150]))
    scorer.wait_for(lanes.output, 150)
    flip_a_byte(model_store.directory(first) / "bank_c.ubj")  # the file as trained again
    assert models(lanes, "rollback", "--reason", "back") == 0
    scorer.wait_for_log(f"scores with model set {first} from this batch on (was {second};")
    produce(lanes.bootstrap, lanes.input, encoded(events[150:]))
    scorer.wait_for(lanes.output, 300)
    scorer.stop()
    by_event = results(lanes)
    assert {v for e in events[:150] for v in by_event[e["event_id"]]} == {set_versions(model_store, second)}
    assert {v for e in events[150:] for v in by_event[e["event_id"]]} == {set_versions(model_store, first)}
    assert [h["action"] for h in model_store.history()] == ["activate", "activate", "rollback"]
