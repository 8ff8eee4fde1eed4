"""End to end over SASL_SSL with SCRAM-SHA-512, with exactly the ACLs ``crm-scorer acls`` prints: every event
scored, in both guarantees, and a principal without an ACL refused."""

from __future__ import annotations

import pytest

from tests.integration.faults.support import wait_until
from tests.integration.harness import ScorerProcess
from tests.integration.security.support import SecureLanes


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_the_scorer_with_exactly_the_documented_acls_scores_everything(
    secure_lanes: SecureLanes, guarantee: str
) -> None:
    secure_lanes.grant(secure_lanes.scorer_acls(guarantee))
    events = secure_lanes.feed(200, seed=1601)
    env = secure_lanes.scorer_env()
    with ScorerProcess(secure_lanes.lanes, secure_lanes.folder, "--guarantee", guarantee, env=env) as scorer:
        wait_until(lambda: secure_lanes.committed() >= len(events), 90, "every offset committed", scorer)
        scorer.stop()
    scored = secure_lanes.scored()
    assert set(scored) == events
    assert sum(scored.values()) == len(events), "duplicates in a run without faults"
    assert "uthoriz" not in scorer.log, scorer.log[-3000:]
