"""The challenger in the engine, with real model sets: scored beside the champion in the same batch, never the
decision; its comparison figures (agreement, flips, rank correlation, PSI) and its shadow records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from consumer.core.challenger import Challenger, Tally, challenged_names, psi, spearman
from consumer.core.engine import ScoringEngine
from models.artifacts import ModelSet, load_models
from models.config import DEFAULT_ARTIFACTS_DIR, ModelsConfig
from models.manifest import Manifest
from producer_tools.world import generate
from schemas import ResultDecoder, SingleObjectEncoder, load_catalog
from tests.model_sets import small_model_set

CATALOG = load_catalog()
EVENTS = [SingleObjectEncoder(CATALOG.application_event_latest)(e) for e in generate(400, seed=31).events]
ALL = ("bank_a", "bank_b", "bank_c", "bank_d", "bank_e", "lead")


@pytest.fixture(scope="module")
def other_seed(tmp_path_factory: pytest.TempPathFactory) -> ModelSet:
    out = tmp_path_factory.mktemp("seed13") / "set"
    small_model_set(out, seed=13, parent=Manifest.read(DEFAULT_ARTIFACTS_DIR).version)
    return load_models(ModelsConfig(), out)


def merged(engine: ScoringEngine) -> dict[str, Tally]:
    tallies: dict[str, list[Tally]] = {}
    for start in range(0, len(EVENTS), 100):
        for name, shadow in engine.score_batch(EVENTS[start : start + 100]).shadow.items():
            tallies.setdefault(name, []).append(shadow.tally())
    return {name: Tally(*np.sum([list(vars(t).values()) for t in ts], axis=0).tolist()) for name, ts in tallies.items()}


def test_a_challenger_identical_to_the_champion_agrees_everywhere(engine: ScoringEngine, model_set: ModelSet) -> None:
    engine.set_challenger(Challenger(model_set, ALL))
    outcome = engine.score_batch(EVENTS[:200])
    assert set(outcome.shadow) == set(ALL)
    for name, shadow in outcome.shadow.items():
        tally = shadow.tally()
        assert tally == Tally(200, 200, 0, 0), name
        assert spearman(shadow.champion, shadow.challenger) == pytest.approx(1.0)
        assert psi(shadow.champion, shadow.challenger) == pytest.approx(0.0, abs=1e-12)
        assert np.allclose(shadow.champion, shadow.challenger, atol=1e-6)


def test_the_published_results_are_the_champions_with_or_without_a_challenger(
    engine: ScoringEngine, other_seed: ModelSet
) -> None:
    without = [s.value[-200:] for s in engine.score_batch(EVENTS[:50]).scored]
    engine.swap_models(engine.models)  # forget the cached scores: the second batch is scored afresh
    engine.set_challenger(Challenger(other_seed, ("bank_c",)))
    outcome = engine.score_batch(EVENTS[:50])
    assert [s.value[-200:] for s in outcome.scored] == without, "results do not depend on the challenger"
    decoded = [ResultDecoder(CATALOG).decode(s.value) for s in outcome.scored]
    assert {b["model_version"] for r in decoded for b in r["banks"] if b["bank"] == "bank_c"} == {
        engine.models.versions()["bank_c"]
    }
    record = json.loads(outcome.shadow_records[0][1])
    assert outcome.shadow_records[0][0] == str(record["application_id"]).encode()
    assert record["models"]["bank_c"][2] == other_seed.versions()["bank_c"] and len(outcome.shadow_records) == 50


def test_a_challenger_retrained_on_another_seed_flips_some_decisions(
    engine: ScoringEngine, other_seed: ModelSet
) -> None:
    """Prints each model's agreement and flips (``-s``)."""
    engine.set_challenger(Challenger(other_seed, challenged_names(engine.models, other_seed)))
    tallies = merged(engine)
    assert set(tallies) == set(ALL)
    bank_c = tallies["bank_c"]
    assert (
        bank_c.scored == tallies["lead"].scored > 0.95 * len(EVENTS)
        and bank_c.agreed + bank_c.to_approve + bank_c.to_decline == bank_c.scored
    )
    assert 0 < bank_c.to_approve + bank_c.to_decline < bank_c.scored / 2
    for name, t in sorted(tallies.items()):
        share = t.agreed / t.scored
        print(f"\n{name}: agreement {share:.3f}, flips to approve {t.to_approve}, to decline {t.to_decline}", end="")


def test_a_challenger_is_dropped_once_its_set_is_the_champion(engine: ScoringEngine, other_seed: ModelSet) -> None:
    engine.set_challenger(Challenger(other_seed, ("bank_c",)))
    engine.swap_models(other_seed)
    assert engine.challenger is None and engine.score_batch(EVENTS[:5]).shadow == {}


def test_a_challenger_of_a_model_the_champion_does_not_hold_is_refused(
    engine: ScoringEngine, other_seed: ModelSet
) -> None:
    with pytest.raises(ValueError, match="bank_z"):
        challenged_names(engine.models, other_seed, ("bank_z",))
    with pytest.raises(ValueError, match="bank_z not in the running set"):
        engine.set_challenger(Challenger(other_seed, ("bank_z",)))


def test_rank_correlation_and_psi_see_a_different_ranking_and_distribution() -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(size=5000)
    assert spearman(a, 1 - a) == pytest.approx(-1.0)
    assert abs(spearman(a, rng.uniform(size=5000))) < 0.05
    assert psi(a, a**3) > 0.5 > psi(a, rng.uniform(size=5000))


def test_a_shadow_record_reads_back_as_json_writes_it(engine: ScoringEngine, other_seed: ModelSet) -> None:
    engine.set_challenger(Challenger(other_seed, ("bank_c", "lead")))
    outcome = engine.score_batch(EVENTS[:20])
    record = json.loads(outcome.shadow_records[3][1])
    shadow = outcome.shadow["bank_c"]
    assert set(record) == {"event_id", "application_id", "scored_at", "models"} and set(record["models"]) == {
        "bank_c",
        "lead",
    }
    assert record["models"]["bank_c"] == [
        float(shadow.challenger[3]),
        bool(shadow.challenger_approved[3]),
        shadow.version,
    ]
