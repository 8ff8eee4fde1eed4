"""A result the scorer's own producer refuses at once for its size (``message.max.bytes`` in
``kafka.producer_extra``) becomes its event's dead letter (``result_rejected``, the event's bytes), under both
guarantees; the worker never stops for it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.faults.producing import produce_tracked
from tests.integration.faults.support import (
    Expected,
    committed_total,
    conservation,
    pairs,
    read_outcomes,
    valid_messages,
    wait_until,
)
from tests.integration.harness import Lanes, ScorerProcess

pytestmark = pytest.mark.faults
_MAX_BYTES = 1000  # librdkafka's least message.max.bytes


def test_results_the_producer_refuses_for_size_become_dead_letters(
    lanes: Lanes, tmp_path: Path, guarantee: str
) -> None:
    started = time.monotonic()
    messages = valid_messages(200, seed=403)
    delivered = produce_tracked(lanes.bootstrap, lanes.input, pairs(messages))
    env = {"CRM_SCORER_KAFKA__PRODUCER_EXTRA": f'{{"message.max.bytes": {_MAX_BYTES}}}'}
    with ScorerProcess(lanes, tmp_path, "--guarantee", guarantee, env=env) as scorer:
        wait_until(lambda: committed_total(lanes) >= len(messages), 90, "every offset committed", scorer)
        scorer.stop()
    assert "the producer refused a result" in scorer.log, scorer.log[-3000:]
    outcomes = read_outcomes(lanes)
    refused = {p for p, info in outcomes.reasons.items() if info.reason == "result_rejected"}
    scored = frozenset(messages[i][2] for pos, i in delivered.positions.items() if pos not in refused)
    row = conservation(
        f"12. results refused by the producer (message.max.bytes {_MAX_BYTES})",
        Expected(scored, dict.fromkeys(refused, "result_rejected")),
        outcomes,
        time.monotonic() - started,
        "each refused result's event dead-lettered as result_rejected",
        guarantee,
    )
    assert row.dead_lettered == len(refused) > 0
    errors = {info.error.split("): ", 1)[1] for p, info in outcomes.reasons.items() if p in refused}
    assert errors == {"Unable to produce message: Broker: Message size too large"}, errors
