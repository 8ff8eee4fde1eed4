"""The call watchdog: a blocking librdkafka call that outlives its bound fires it (once, naming the call and
the bound); one that returns in time does not; the host names a worker ended by it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from consumer.host.supervisor import WorkerPool, _exit_reason
from consumer.kafka.fault_inject import injected_hang
from consumer.kafka.watchdog import WATCHDOG_EXIT_CODES, CallWatchdog, Watched, bound_of
from consumer.settings import load_settings
from consumer.telemetry.host import Telemetry


class BlockingProducer:
    """A transactional producer whose ``send_offsets_to_transaction`` blocks until released, as librdkafka's did."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.committed = 0

    def send_offsets_to_transaction(self, positions: list[Any], group: Any, timeout: float = -1) -> None:
        self.release.wait(10)

    def commit_transaction(self, timeout: float = -1) -> None:
        self.committed += 1

    def poll(self, timeout: float = 0.0) -> int:
        return 0


def test_a_call_that_outlives_its_bound_fires_the_watchdog_with_the_call_and_its_bound() -> None:
    producer = BlockingProducer()
    fired: list[tuple[str, float]] = []

    def expiry(call: str, bound_s: float) -> None:
        fired.append((call, bound_s))
        producer.release.set()  # the production expiry ends the process; here the call is let go

    watched = Watched(producer, CallWatchdog(on_expiry=expiry), transaction_timeout_s=0.1)
    watched.send_offsets_to_transaction([], None, 0.1)
    assert fired == [("send_offsets_to_transaction", pytest.approx(0.2))]


def test_calls_that_return_in_time_never_fire_it() -> None:
    producer = BlockingProducer()
    fired: list[tuple[str, float]] = []
    watchdog = CallWatchdog(on_expiry=lambda call, bound: fired.append((call, bound)))
    watched = Watched(producer, watchdog, transaction_timeout_s=0.05)
    for _ in range(20):
        watched.commit_transaction(0.0)
    watched.poll(0)  # not a watched call
    threading.Event().wait(0.2)  # past every bound the calls had
    assert producer.committed == 20
    assert fired == []


def test_the_bound_is_the_transaction_timeout_plus_the_calls_own_timeout() -> None:
    assert bound_of(60.0, ([], None, 5.0), {}) == 65.0
    assert bound_of(60.0, (), {"timeout": 30.0}) == 90.0
    assert bound_of(60.0, (), {}) == 60.0
    assert bound_of(60.0, (), {"asynchronous": False}) == 60.0


def test_the_host_names_a_worker_its_watchdog_ended() -> None:
    code = WATCHDOG_EXIT_CODES["send_offsets_to_transaction"]
    assert "watchdog (send_offsets_to_transaction blocked past its bound" in _exit_reason(code)
    assert len(set(WATCHDOG_EXIT_CODES.values())) == len(WATCHDOG_EXIT_CODES)


def test_an_injected_hang_happens_once_per_marker_file(tmp_path: Path) -> None:
    marker = tmp_path / "hung"
    first = injected_hang(f"hang:commit_transaction:2:{marker}")
    assert first is not None and marker.exists()
    first("send_offsets_to_transaction")  # another call, not counted
    first("commit_transaction")  # the first call of it: no hang
    assert injected_hang(f"hang:commit_transaction:2:{marker}") is None, "a replacement runs normally"
    assert injected_hang("") is None


def test_a_malformed_fault_spec_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="CRM_SCORER_FAULT_INJECT must be hang:<call>:<n>:<marker file>"):
        injected_hang("hang:commit_transaction")


class ExitedProcess:
    def __init__(self, exitcode: int) -> None:
        self.exitcode = exitcode


def test_the_host_replaces_a_worker_its_watchdog_ended_and_counts_the_firing_by_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(None, workers=2)
    registry = CollectorRegistry()
    telemetry = Telemetry(settings, registry)
    pool = WorkerPool(settings, lambda _settings, worker: telemetry.observer(worker))
    started: list[int] = []
    monkeypatch.setattr(pool, "_start", started.append)
    pool._processes[1] = ExitedProcess(WATCHDOG_EXIT_CODES["send_offsets_to_transaction"])  # type: ignore[assignment]
    assert pool._replace_crashed() is False
    assert started == [1], "replaced under the same worker number, so the same instance and transactional id"
    labels = {"call": "send_offsets_to_transaction"}
    assert registry.get_sample_value("crm_scorer_watchdog_firings_total", labels) == 1.0
    assert pool.watchdog_firings == {"send_offsets_to_transaction": 1}
