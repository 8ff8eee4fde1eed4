"""What the scorer does when the secured broker refuses it: a missing ACL (Write on the output topic, Write on the
transactional id), a wrong password, a certificate it must not trust. Each: one clear log line naming what is
refused, ``/readyz`` not ready, the process alive (no crash loop), nothing committed that was not published; and
for an ACL, the scorer goes on by itself once it is granted, losing nothing."""

from __future__ import annotations

import time

import pytest

from consumer.commands.acls_cmd import Acl
from tests.integration.faults.support import Row, telemetry_url, wait_until
from tests.integration.harness import ScorerProcess
from tests.integration.security.support import ROWS, SecureLanes, readyz

EVENTS = 300
_OBSERVE_S = 3.0  # how long a refused scorer is watched: longer than a few retries, shorter than the log throttle


def _refused_then_granted(
    secure_lanes: SecureLanes, guarantee: str, missing: list[Acl], line: str, scenario: str
) -> Row:
    acls = secure_lanes.scorer_acls(guarantee)
    assert missing and all(a in acls for a in missing), "the ACL left out is one the documented list grants"
    secure_lanes.grant([a for a in acls if a not in missing])
    events = secure_lanes.feed(EVENTS, seed=1602)
    started = time.monotonic()
    env = secure_lanes.scorer_env()
    with ScorerProcess(secure_lanes.lanes, secure_lanes.folder, "--guarantee", guarantee, env=env) as scorer:
        url = telemetry_url(scorer)
        scorer.wait_for_log(line, timeout=60)
        time.sleep(_OBSERVE_S)
        status, body = readyz(url)
        assert status == 503 and '"broker_reachable": {"ok": false' in body, body
        assert scorer.log.count(line) == 1, f"the refusal is logged once per interval, not per retry:\n{scorer.log}"
        assert scorer.log.count(" consuming ") <= 1, f"the worker restarted:\n{scorer.log}"
        assert secure_lanes.committed() == 0, "offsets committed while nothing could be published"
        assert not secure_lanes.scored(), "results visible while the ACL is missing"
        secure_lanes.grant(missing)
        wait_until(lambda: secure_lanes.committed() >= EVENTS, 90, "every offset committed after the grant", scorer)
        wait_until(lambda: readyz(url)[0] == 200, 30, "ready after the grant", scorer)
        scorer.stop()
    scored = secure_lanes.scored()
    lost = len(events - set(scored))
    duplicates = sum(scored.values()) - len(scored)
    assert lost == 0
    if guarantee == "exactly_once":
        assert duplicates == 0
    assert "authorised again" in scorer.log
    row = Row(
        scenario,
        EVENTS,
        len(set(scored)),
        0,
        duplicates,
        lost,
        time.monotonic() - started,
        "one line naming the ACL, /readyz 503, 0 committed while refused; resumed by itself after the grant",
        guarantee,
        "Apache Kafka 4.1.1 SASL_SSL",
    )
    ROWS.append(row)
    return row


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_missing_write_acl_on_the_output_holds_everything_until_it_is_granted(
    secure_lanes: SecureLanes, guarantee: str
) -> None:
    output = secure_lanes.lanes.output
    missing = [a for a in secure_lanes.scorer_acls(guarantee) if a.resource_name == output and a.operation == "WRITE"]
    _refused_then_granted(
        secure_lanes,
        guarantee,
        missing,
        f"the broker refuses Write on Topic:{output} ",
        "S1. no Write ACL on the output topic, then granted",
    )


def test_a_missing_transactional_id_acl_holds_the_worker_until_it_is_granted(secure_lanes: SecureLanes) -> None:
    prefix = secure_lanes.settings("exactly_once").transactional_id_prefix()
    missing = [
        a
        for a in secure_lanes.scorer_acls("exactly_once")
        if a.resource_type == "TRANSACTIONAL_ID" and a.operation == "WRITE"
    ]
    line = f"the broker refuses Write on TransactionalId:{prefix}"
    _refused_then_granted(
        secure_lanes, "exactly_once", missing, line, "S2. no Write ACL on the transactional ids, then granted"
    )
