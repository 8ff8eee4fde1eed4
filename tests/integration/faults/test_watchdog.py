"""The call watchdog on Apache Kafka: a worker whose ``send_offsets_to_transaction`` blocks (an injected hang:
the real one, seen twice in about 20 three-broker runs, is not reproducible on demand) is ended by its watchdog,
the host replaces it under the same instance id, the replacement fences the old transactional producer and
starts from the committed offsets, and every event is scored exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.conftest import is_tansu
from tests.integration.faults.producing import Feeder
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

pytestmark = [
    pytest.mark.faults,
    pytest.mark.unsettled,  # passed 4 of 6 runs on a loaded machine: in the 2 others no worker reached the hang
    pytest.mark.skipif(is_tansu(), reason="Tansu does not hide aborted transactions from read_committed"),
]
_EVENTS = 6_000
# delivery.timeout.ms 5 s: transaction.timeout.ms is 15 s, so send_offsets_to_transaction (given 5 s) is bounded
# at 20 s
_BOUND_S = 20.0


def test_a_hung_send_offsets_ends_the_worker_and_its_replacement_scores_everything_once(
    lanes: Lanes, tmp_path: Path
) -> None:
    started = time.monotonic()
    messages = valid_messages(_EVENTS, seed=404)
    env = {
        "CRM_SCORER_PRODUCER__DELIVERY_TIMEOUT_MS": "5000",
        "CRM_SCORER_FAULT_INJECT": f"hang:send_offsets_to_transaction:5:{tmp_path / 'hung-once'}",
    }
    args = ("--guarantee", "exactly_once", "--workers", "2")
    with (
        ScorerProcess(lanes, tmp_path, *args, env=env) as scorer,
        Feeder(lanes.bootstrap, lanes.input, pairs(messages), rate=300) as feeder,
    ):
        scorer.wait_for_log("fault injected: send_offsets_to_transaction blocks for ever", 180)
        scorer.wait_for_log("was ended by its watchdog (send_offsets_to_transaction", _BOUND_S + 15)
        delivered = feeder.join()
        wait_until(lambda: committed_total(lanes) >= len(messages), 120, "every offset committed", scorer)
        scorer.stop()
    line = f"watchdog: send_offsets_to_transaction did not return within its bound of {_BOUND_S:.1f} s"
    assert scorer.log.count(line) == 1, scorer.log[-4000:]
    for logged in scorer.log.splitlines():
        if "watchdog" in logged:
            print(logged)  # the worker's line and the host's, with -s
    outcomes = read_outcomes(lanes)
    row = conservation(
        "13. send_offsets_to_transaction hangs in one of two workers (injected)",
        Expected(frozenset(messages[i][2] for i in delivered.positions.values())),
        outcomes,
        time.monotonic() - started,
        "ended by its watchdog, replaced; scored exactly once",
        "exactly_once",
    )
    assert row.lost == 0 and row.duplicates == 0
