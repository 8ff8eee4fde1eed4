"""Secrets stay secret on the secured broker, where the password is real and used: not in the log at DEBUG (with
librdkafka's own security, broker and configuration debugging on), not in ``/metrics``, not in a settings error,
not in the report of a worker that stops on an error."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

from consumer.commands.acls_cmd import DEFAULT_PRINCIPALS, Acl
from tests.integration.faults.support import http_get, telemetry_url, wait_until
from tests.integration.harness import SCORER, Lanes, ScorerProcess
from tests.integration.security.support import SecureLanes


def _password(secure_lanes: SecureLanes) -> str:
    assert secure_lanes.kafka.security is not None
    return secure_lanes.kafka.security.password("crm-scorer")


def test_no_secret_in_debug_logs_or_metrics_while_scoring(secure_lanes: SecureLanes) -> None:
    secure_lanes.grant(secure_lanes.scorer_acls("at_least_once"))
    events = secure_lanes.feed(100, seed=1604)
    env = secure_lanes.scorer_env(log__level="DEBUG", kafka__extra=json.dumps({"debug": "security,broker,conf"}))
    with ScorerProcess(secure_lanes.lanes, secure_lanes.folder, env=env) as scorer:
        url = telemetry_url(scorer)
        wait_until(lambda: secure_lanes.committed() >= len(events), 90, "every offset committed", scorer)
        status, metrics = http_get(f"{url}/metrics")
        scorer.stop()
    assert status == 200 and "crm_scorer_" in metrics
    assert " DEBUG " in scorer.log and "SASL" in scorer.log, "the log is not at DEBUG with librdkafka's debugging"
    secret = _password(secure_lanes)
    assert secret not in scorer.log
    assert secret not in metrics
    assert set(secure_lanes.scored()) == events


def test_no_secret_in_a_settings_error(secure_lanes: SecureLanes) -> None:
    secret = _password(secure_lanes)
    contradicting = {"kafka__extra": json.dumps({"sasl.password": f"{secret}-other"})}
    invalid = {"kafka__sasl_mechanism": "SCRAM-SHA-1", "kafka__ssl_verify": f"{secret}"}
    for problem, expected in ((contradicting, "sasl.password=***"), (invalid, "kafka.sasl_mechanism")):
        env = secure_lanes.scorer_env(kafka__sasl_password=secret, **problem)
        run = subprocess.run([*SCORER, "--bootstrap-servers", secure_lanes.lanes.bootstrap], env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert run.returncode == 2 and expected in run.stderr, run.stderr
        assert secret not in run.stdout + run.stderr


def test_no_secret_in_the_report_of_a_worker_that_stops(secure_lanes: SecureLanes) -> None:
    lanes = secure_lanes.lanes
    gone = Lanes(lanes.bootstrap, lanes.input, f"no-such-topic-{uuid.uuid4().hex[:8]}", lanes.dlq, lanes.group)
    # Granted on the missing topic's name too: without Describe the broker would not say the topic is missing
    # (it hides what a principal may not see) but refuse it, which the scorer waits out as a missing ACL.
    secure_lanes.grant(secure_lanes.scorer_acls("at_least_once"))
    secure_lanes.grant(
        [Acl(DEFAULT_PRINCIPALS["scorer"], "TOPIC", gone.output, "LITERAL", op) for op in ("WRITE", "DESCRIBE")]
    )
    secure_lanes.feed(20, seed=1605)
    secret = _password(secure_lanes)
    env = secure_lanes.scorer_env(kafka__sasl_password=secret, producer__delivery_timeout_ms="5000",
                                  kafka__extra=json.dumps({"topic.metadata.propagation.max.ms": 2000}))  # fmt: skip
    env.pop("CRM_SCORER_KAFKA__SASL_PASSWORD_FILE")  # the password from the environment this time
    started = time.monotonic()
    with ScorerProcess(gone, secure_lanes.folder, env=env) as scorer:
        assert scorer.process is not None
        code = scorer.process.wait(90)
    assert code != 0, "the worker should stop on a topic that does not exist"
    assert "cannot publish" in scorer.log and time.monotonic() - started < 90
    assert secret not in scorer.log
