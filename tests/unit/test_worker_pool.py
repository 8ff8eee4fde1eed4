"""The worker pool's restart budget: crashed workers are replaced, a crash loop is not."""

from __future__ import annotations

from consumer.host.supervisor import RestartBudget, _exit_reason


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_restarts_within_the_budget_are_allowed_then_refused() -> None:
    budget = RestartBudget(allowed=3, window_s=60.0, clock=FakeClock())
    assert [budget.take() for _ in range(4)] == [True, True, True, False]


def test_old_restarts_leave_the_window() -> None:
    clock = FakeClock()
    budget = RestartBudget(allowed=2, window_s=60.0, clock=clock)
    assert budget.take() and budget.take()
    clock.now = 30.0
    assert not budget.take()
    clock.now = 61.0  # both restarts at t=0 are now older than the window
    assert budget.take() and budget.take()
    assert not budget.take()


def test_exit_reasons_name_the_signal_or_the_status() -> None:
    assert _exit_reason(-9) == "was killed by SIGKILL"
    assert _exit_reason(1) == "exited with status 1"
