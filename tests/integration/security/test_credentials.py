"""The handshake refused: a wrong SCRAM password, a broker certificate from a CA the scorer does not trust, an
expired broker certificate. Each: the reason in the log (throttled, not a line per reconnect), ``/readyz`` not
ready, the process alive and retrying, nothing committed; the wrong password fixed, everything is scored."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from producer_tools.servers.kafka_security import CertificateAuthority
from tests.integration.faults.support import Row, telemetry_url, wait_until
from tests.integration.harness import Lanes, ScorerProcess
from tests.integration.security.support import FULL, ROWS, SecureLanes, full_only, readyz

EVENTS = 200
_OBSERVE_S = 3.0
_BAD_PASSWORD = "SASL authentication error: Authentication failed during authentication due to invalid credentials"
_UNTRUSTED = "certificate verify failed"


def _refused(scorer: ScorerProcess, secure_lanes: SecureLanes, reason: str) -> None:
    """The scorer logs ``reason``, stays alive and not ready, and commits nothing."""
    url = telemetry_url(scorer)
    scorer.wait_for_log(reason, timeout=60)
    time.sleep(_OBSERVE_S)
    status, body = readyz(url)
    assert status == 503 and '"broker_reachable": {"ok": false' in body, body
    own = [line for line in scorer.log.splitlines() if "consumer.kafka.loop: kafka: " in line and reason in line]
    assert 1 <= len(own) <= 2 * (1 + _OBSERVE_S // 10), f"the reason is logged per interval, not per reconnect:\n{own}"
    assert scorer.process is not None and scorer.process.poll() is None, "the scorer exited"
    assert scorer.log.count(" consuming ") <= 1, f"the worker restarted:\n{scorer.log}"
    assert secure_lanes.committed() == 0


@pytest.mark.parametrize("guarantee", ["at_least_once", pytest.param("exactly_once", marks=full_only)])
def test_a_wrong_password_is_refused_clearly_and_the_right_one_scores_everything(
    secure_lanes: SecureLanes, guarantee: str
) -> None:
    secure_lanes.grant(secure_lanes.scorer_acls(guarantee))
    events = secure_lanes.feed(EVENTS, seed=1603)
    started = time.monotonic()
    wrong = secure_lanes.scorer_env(password="not-the-password")
    lanes, folder = secure_lanes.lanes, secure_lanes.folder
    with ScorerProcess(lanes, folder, "--guarantee", guarantee, env=wrong) as scorer:
        _refused(scorer, secure_lanes, _BAD_PASSWORD)
    assert "not-the-password" not in scorer.log
    if not FULL:
        return  # the restart with the right password: make test-security
    with ScorerProcess(lanes, folder, "--guarantee", guarantee, env=secure_lanes.scorer_env()) as scorer:
        wait_until(lambda: secure_lanes.committed() >= EVENTS, 90, "every offset committed", scorer)
        scorer.stop()
    scored = secure_lanes.scored()
    assert set(scored) == events
    ROWS.append(
        Row(
            "S3. wrong SCRAM password, then the right one",
            EVENTS,
            len(scored),
            0,
            sum(scored.values()) - len(scored),
            len(events - set(scored)),
            time.monotonic() - started,
            "SASL authentication error in the log, /readyz 503, 0 committed; restarted with the right one",
            guarantee,
            "Apache Kafka 4.1.1 SASL_SSL",
        )
    )


def test_a_broker_certificate_from_an_untrusted_ca_is_refused(secure_lanes: SecureLanes, tmp_path: Path) -> None:
    started = time.monotonic()
    secure_lanes.grant(secure_lanes.scorer_acls("at_least_once"))
    foreign = tmp_path / "foreign-ca.pem"
    foreign.write_bytes(CertificateAuthority.create("some other CA").pem())
    env = secure_lanes.scorer_env(ca=foreign)
    with ScorerProcess(secure_lanes.lanes, secure_lanes.folder, env=env) as scorer:
        _refused(scorer, secure_lanes, _UNTRUSTED)
    assert secure_lanes.kafka.security is not None
    assert secure_lanes.kafka.security.password("crm-scorer") not in scorer.log
    ROWS.append(
        Row(
            "S4. broker certificate from an untrusted CA",
            0,
            0,
            0,
            0,
            0,
            time.monotonic() - started,
            "certificate verify failed, /readyz 503, retrying, 0 committed",
            "at_least_once",
            "Apache Kafka 4.1.1 SASL_SSL",
        )
    )


@pytest.fixture
def expired_tls_endpoint(secure_lanes: SecureLanes, tmp_path: Path) -> Iterator[str]:
    """A TLS listener presenting a certificate from the trusted CA that expired yesterday (a broker whose
    certificate was not renewed; the handshake fails before any Kafka request)."""
    assert secure_lanes.kafka.security is not None
    now = dt.datetime.now(dt.UTC)
    key, cert = secure_lanes.kafka.security.ca.issue(
        "broker", valid_from=now - dt.timedelta(days=30), valid_until=now - dt.timedelta(days=1)
    )
    pem = tmp_path / "expired.pem"
    pem.write_bytes(key + cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed: the test is over
                return
            try:
                context.wrap_socket(conn, server_side=True).close()
            except (OSError, ssl.SSLError):  # the client refuses the certificate: what the test wants
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def test_an_expired_broker_certificate_is_refused(secure_lanes: SecureLanes, expired_tls_endpoint: str) -> None:
    started, lanes = time.monotonic(), secure_lanes.lanes
    pointed = Lanes(expired_tls_endpoint, lanes.input, lanes.output, lanes.dlq, lanes.group)
    with ScorerProcess(pointed, secure_lanes.folder, env=secure_lanes.scorer_env()) as scorer:
        _refused(scorer, secure_lanes, _UNTRUSTED)
    ROWS.append(
        Row(
            "S5. expired broker certificate",
            0,
            0,
            0,
            0,
            0,
            time.monotonic() - started,
            "certificate verify failed, /readyz 503, retrying, 0 committed",
            "at_least_once",
            "TLS endpoint, expired certificate",
        )
    )


@full_only
def test_turning_verification_off_takes_an_explicit_setting_and_logs_a_warning(
    secure_lanes: SecureLanes, tmp_path: Path
) -> None:
    secure_lanes.grant(secure_lanes.scorer_acls("at_least_once"))
    events = secure_lanes.feed(50, seed=1607)
    foreign = tmp_path / "foreign-ca.pem"
    foreign.write_bytes(CertificateAuthority.create("some other CA").pem())
    env = secure_lanes.scorer_env(ca=foreign, kafka__ssl_verify="false")
    with ScorerProcess(secure_lanes.lanes, secure_lanes.folder, env=env) as scorer:
        wait_until(lambda: secure_lanes.committed() >= len(events), 90, "every offset committed", scorer)
        scorer.stop()
    assert "kafka.ssl_verify is false: the broker's certificate and host name are not verified" in scorer.log
    assert _UNTRUSTED not in scorer.log
