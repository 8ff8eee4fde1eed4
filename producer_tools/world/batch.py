"""``generate``: a seeded batch of the synthetic CRM world, events plus their ground truth.

The same ``(count, seed, scenario, start, events_per_second)`` always gives the same events and truth:
every draw comes from generators spawned from ``seed``, one per stage, nothing global. The v2 fields are
always drawn, so a v1 and a v2 batch of the same seed differ only by those two keys.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from producer_tools.world.activity import draw_activity
from producer_tools.world.applicants import draw_applicants
from producer_tools.world.events import RESUBMITTED, UPDATED, apply_replays, draw_ids, plan_replays, timeline, v2_fields
from producer_tools.world.ground_truth import BANKS, oracle
from producer_tools.world.imperfections import add_imperfections
from producer_tools.world.records import build_events
from producer_tools.world.scenarios import scenario_named

DEFAULT_START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
SCHEMA_VERSIONS = ("v1", "v2")


@dataclass(frozen=True)
class WorldBatch:
    """Events (Avro-native dicts) and, per event, the truth behind them.

    ``truth[i]`` is ``{"lead": {"p", "converted"}, "banks": {bank: {"p", "approved"}}}``: the oracle's
    probabilities and outcomes drawn from them (an exact resubmission shares its original's outcomes).
    """

    events: list[dict[str, Any]]
    truth: list[dict[str, Any]]


def generate(
    count: int,
    seed: int,
    scenario: str = "baseline",
    start: dt.datetime = DEFAULT_START,
    events_per_second: float = 50.0,
    schema_version: str = "v1",
) -> WorldBatch:
    """``count`` events of the world ``scenario`` from ``start`` on, ``events_per_second`` apart on average.

    Raises:
        ValueError: a negative count, a non-positive rate, a naive ``start``, an unknown scenario or
            schema version.
    """
    _check(count, start, events_per_second, schema_version)
    world = scenario_named(scenario)
    stages = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    occurred_at, day = timeline(stages[0], count, start, events_per_second)
    applicant, employment = draw_applicants(stages[1], day, world)
    activity = draw_activity(stages[2], world, employment)
    v2 = v2_fields(stages[3], applicant["merch_code"])
    add_imperfections(stages[3], applicant, activity, day)
    ids = draw_ids(stages[4], count)
    plan = plan_replays(stages[4], day)
    # event ids are never shared: only application/lead ids, questionnaire and activity repeat
    event_ids = ids.pop("event_id")
    apply_replays(stages[4], plan, applicant, activity, v2, ids)
    ids["event_id"] = event_ids
    event_type = (plan.kind == UPDATED).astype(np.int64)
    events = build_events(ids, event_type, occurred_at, v2 if schema_version == "v2" else None, applicant, activity)
    return WorldBatch(events, _truth(stages[5], events, plan.source, plan.kind == RESUBMITTED))


def _check(count: int, start: dt.datetime, events_per_second: float, schema_version: str) -> None:
    if count < 0:
        raise ValueError(f"count: must be >= 0, got {count}")
    if not events_per_second > 0:
        raise ValueError(f"events_per_second: must be > 0, got {events_per_second}")
    if start.tzinfo is None:
        raise ValueError("start: must be timezone-aware (UTC)")
    if schema_version not in SCHEMA_VERSIONS:
        raise ValueError(f"schema_version: unknown {schema_version!r}, expected one of {SCHEMA_VERSIONS}")


def _truth(
    rng: np.random.Generator, events: list[dict[str, Any]], source: np.ndarray, resubmitted: np.ndarray
) -> list[dict[str, Any]]:
    """Oracle probabilities from the observed events, and outcomes drawn from them."""
    probs = oracle(events)
    names = ["lead", *BANKS]
    p = np.stack([probs[name] for name in names], axis=1) if events else np.zeros((0, len(names)))
    hit = rng.random(p.shape) < p
    hit[resubmitted] = hit[source[resubmitted]]  # the same application gets the same decisions
    p_rows, hit_rows = p.tolist(), hit.tolist()
    return [
        {
            "lead": {"p": ps[0], "converted": hs[0]},
            "banks": {bank: {"p": ps[j], "approved": hs[j]} for j, bank in enumerate(BANKS, start=1)},
        }
        for ps, hs in zip(p_rows, hit_rows, strict=True)
    ]
