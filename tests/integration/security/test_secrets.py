"""Secrets stay secret on the secured broker, where the password is real and used: not in a settings error, not in
the report of a worker that stops on an error (the log at DEBUG and ``/metrics``: test_secured_scoring)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from consumer.commands.acls_cmd import DEFAULT_PRINCIPALS, Acl
from consumer.settings import load_settings
from schemas.errors import ConfigError
from tests.integration.harness import Lanes, ScorerProcess
from tests.integration.security.support import SecureLanes


def _password(secure_lanes: SecureLanes) -> str:
    assert secure_lanes.kafka.security is not None
    return secure_lanes.kafka.security.password("crm-scorer")


def test_no_secret_in_a_settings_error(secure_lanes: SecureLanes, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = _password(secure_lanes)
    contradicting = {"kafka__extra": json.dumps({"sasl.password": f"{secret}-other"})}
    invalid = {"kafka__sasl_mechanism": "SCRAM-SHA-1", "kafka__ssl_verify": f"{secret}"}
    for problem, expected in ((contradicting, "sasl.password=***"), (invalid, "kafka.sasl_mechanism")):
        with monkeypatch.context() as env:
            for key, value in secure_lanes.scorer_env(kafka__sasl_password=secret, **problem).items():
                env.setenv(key, value)
            with pytest.raises(ConfigError) as refused:
                load_settings(None)  # what `crm-scorer run` prints, after "crm-scorer: ", exiting 2
        assert expected in str(refused.value), refused.value
        assert secret not in str(refused.value)


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
    env = secure_lanes.scorer_env(
        kafka__sasl_password=secret,
        producer__delivery_timeout_ms="5000",
        kafka__extra=json.dumps({"topic.metadata.propagation.max.ms": 2000}),
    )
    env.pop("CRM_SCORER_KAFKA__SASL_PASSWORD_FILE")  # the password from the environment this time
    started = time.monotonic()
    with ScorerProcess(gone, secure_lanes.folder, env=env) as scorer:
        assert scorer.process is not None
        code = scorer.process.wait(90)
    assert code != 0, "the worker should stop on a topic that does not exist"
    assert "cannot publish" in scorer.log and time.monotonic() - started < 90
    assert secret not in scorer.log
