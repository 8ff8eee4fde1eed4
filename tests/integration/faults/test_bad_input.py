"""Bad input through the real loop: the poison catalogue and a fuzz corpus. The scorer never exits.

Scenarios 5 and 6 of the fault suite. Every message's outcome is known before it is sent (a catalogue kind's
declared outcome; for fuzz, what the decoder and the id checks make of it in this process), and each input
position must end exactly so: a score result for the event inside, or a dead letter with the named reason.
"""

from __future__ import annotations

import collections
import random
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumer.core.validation import check_event
from producer_tools.publishing.poison import PoisonKind, poison_kinds
from producer_tools.world import generate
from schemas import EventDecoder, load_catalog
from schemas.errors import InvalidEventError
from tests.integration.faults.producing import produce_tracked
from tests.integration.faults.support import (
    Expected,
    committed_total,
    conservation,
    http_get,
    read_outcomes,
    telemetry_url,
    valid_messages,
    wait_until,
)
from tests.integration.harness import ENCODE_V2, Lanes, ScorerProcess

pytestmark = pytest.mark.faults
PER_KIND = 3
Planned = tuple[bytes | None, bytes, str | None, str]  # key, value, event_id, the outcome it must get
FUZZ_COUNT = 100_000


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = http_get(url + "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def _poison_plan(kinds: tuple[PoisonKind, ...], rng: random.Random) -> list[Planned]:
    """(key, value, event_id, outcome) of ``PER_KIND`` messages of every kind and 400 valid events, shuffled."""
    events = generate(len(kinds) * PER_KIND + 400, seed=205).events
    plan: list[Planned] = []
    for i, event in enumerate(events):
        if i < len(kinds) * PER_KIND:
            kind = kinds[i % len(kinds)]
            poison = kind.make(event, ENCODE_V2, rng)
            plan.append((poison.key, poison.value, poison.event_id, kind.outcome))
        else:
            plan.append((event["application_id"].encode(), ENCODE_V2(event), str(event["event_id"]), "scored"))
    rng.shuffle(plan)
    return plan


def test_every_poison_kind_gets_its_expected_outcome_and_the_scorer_keeps_running(
    lanes: Lanes, tmp_path: Path, guarantee: str
) -> None:
    started = time.monotonic()
    kinds = poison_kinds()
    assert len(kinds) >= 12
    plan = _poison_plan(kinds, random.Random(205))
    delivered = produce_tracked(lanes.bootstrap, lanes.input, [(k, v) for k, v, _, _ in plan])
    scored = frozenset(e for _, _, e, outcome in plan if outcome == "scored" and e is not None)
    dead = {pos: plan[i][3] for pos, i in delivered.positions.items() if plan[i][3] != "scored"}
    with ScorerProcess(lanes, tmp_path, "--log-json", "--guarantee", guarantee) as scorer:
        url = telemetry_url(scorer)
        wait_until(lambda: committed_total(lanes) >= len(plan), 120, "every offset committed", scorer)
        samples = _samples(url)
        assert scorer.process is not None and scorer.process.poll() is None, "the scorer exited on poison"
        scorer.stop()
    name = f"5. poison catalogue ({len(kinds)} kinds x {PER_KIND})"
    row = conservation(
        name,
        Expected(scored, dead),
        read_outcomes(lanes),
        time.monotonic() - started,
        f"{len(kinds)} kinds, each with its declared outcome",
        guarantee,
    )
    assert row.duplicates == 0
    reasons = collections.Counter(dead.values())
    for reason, count in reasons.items():
        assert samples[("crm_scorer_dead_letters_total", (("reason", reason),))] == count, reason
    for kind in kinds:
        for feature, anomaly in kind.anomalies:
            key = ("crm_scorer_feature_anomalies_total", (("feature", feature), ("kind", anomaly)))
            assert samples.get(key, 0) >= PER_KIND, f"{kind.name}: {feature} {anomaly} not counted"
    # Ids are checked before use: an unsafe id never reaches a log line, and its dead letter names the field.
    assert "forged log line" not in scorer.log
    unsafe = [info for info in read_outcomes(lanes).reasons.values() if info.field == "application_id"]
    assert unsafe and all(info.reason in ("invalid_field", "missing_id") for info in unsafe)
    assert not any("forged" in info.error or "a" * 65 in info.error for info in unsafe), "a header echoes the id"


def _fuzzed(value: bytes, rng: random.Random) -> bytes:
    """Flip 1-4 bits anywhere (header included), or cut the message short."""
    if rng.random() < 0.5:
        return value[: rng.randrange(len(value))]
    mutated = bytearray(value)
    for _ in range(rng.randint(1, 4)):
        mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
    return bytes(mutated)


def _expected_outcomes(values: list[bytes]) -> tuple[list[str | None], list[str | None]]:
    """Per value: the event_id it must be scored under, or the dead-letter reason it must get."""
    records, errors = EventDecoder(load_catalog()).decode_batch(values)
    ids: list[str | None] = []
    reasons: list[str | None] = []
    for record, error in zip(records, errors, strict=True):
        if error is None:
            try:
                check_event(record)
            except InvalidEventError as exc:
                error = exc
        ids.append(None if error is not None else str(record["event_id"]))
        reasons.append(error.reason if error is not None else None)
    return ids, reasons


@pytest.mark.matrix  # 100k events twice: make test-faults (the poison catalogue covers each kind in make test)
def test_fuzz_of_bit_flipped_and_truncated_events_crashes_nothing_and_conserves(
    lanes: Lanes, tmp_path: Path, guarantee: str
) -> None:
    started = time.monotonic()
    rng = random.Random(206)
    originals = valid_messages(FUZZ_COUNT, seed=206)
    values = [_fuzzed(value, rng) for _, value, _ in originals]
    ids, reasons = _expected_outcomes(values)
    assert len(set(filter(None, ids))) == sum(1 for i in ids if i), "two fuzzed events share an event_id"
    delivered = produce_tracked(
        lanes.bootstrap, lanes.input, [(m[0], v) for m, v in zip(originals, values, strict=True)]
    )
    dead = {pos: reasons[i] for pos, i in delivered.positions.items() if reasons[i] is not None}
    scored = frozenset(i for i in ids if i is not None)
    with ScorerProcess(lanes, tmp_path, "--workers", "2", "--guarantee", guarantee) as scorer:
        wait_until(lambda: committed_total(lanes) >= FUZZ_COUNT, 180, "every offset committed", scorer)
        scorer.stop()
    assert "Traceback" not in scorer.log
    conservation(
        "6. fuzz: 100k bit-flipped / truncated events",
        Expected(scored, dead),
        read_outcomes(lanes),
        time.monotonic() - started,
        f"{len(scored):,} still decodable and scored",
        guarantee,
    )
