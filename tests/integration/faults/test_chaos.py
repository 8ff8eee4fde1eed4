"""The cluster chaos run: the three broker faults of ``test_cluster_faults``, repeated on the one three-broker
cluster of the session, each run with no hang, nothing lost and no exactly-once duplicate, every watchdog firing
counted.

Runs: ``CRM_CHAOS_RUNS`` (default 30), each its own test (``run03-exactly_once-frozen``). Run n is exactly_once
when n is odd and at_least_once when it is even, and its fault cycles leader kill, rolling restart, frozen broker;
six runs hold every pair once, so 30 runs are 5 of each fault in each guarantee. Each run has fresh topics, a new
scorer process and its own seed (1000 + n).

Per run (shorter than 9a-9c: 30 runs take about 40 minutes on the two-core machine; the first three took 62, 118
and 56 s there while another test run shared it): a scorer with two workers (``--workers 2``: a host that replaces
a worker its watchdog ends), events at 1,500/s, 2,000 results before the fault and 2,000 after it. The faults:
kill -9 of the node leading most partitions, down 15 s (past the controller fencing it after 9 s), then restarted;
a rolling restart of the three nodes, each stopped gracefully and started once the cluster is back in sync; the
leading node paused (SIGSTOP) 20 s, past the 6 s session timeout the tests give the scorer and the brokers' own 9 s.

Each run asserts:

- no hang: every wait is bounded, and the output not growing for ``HANG_S`` while events are pending fails the
  run as a ``hang``. 200 s is the longest the watchdog lets a call block (135 s: exactly_once's
  ``transaction.timeout.ms`` of 130 s with the default delivery timeout, plus the call's own 5 s) and a minute for
  the host's replacement to start, join the group and publish. The scorer's stop (SIGTERM) has the same bound:
  a worker blocked in librdkafka cannot finish its batch until its watchdog ends it, and the host then exits 1,
  accepted only when every worker that failed was ended by its watchdog;
- lost 0 (``conservation``); exactly-once duplicates 0 (read back ``read_committed``); at-least-once duplicates
  only within the fault's window (``Run.check``);
- a worker replaced by the host only when its watchdog ended it: the firings are counted from the worker's line
  ``watchdog: <call> did not return within its bound of <s> s; ending the worker (exit status <n>) so the host
  replaces it``; a replacement must be the host's ``worker <n> was ended by its watchdog (...); starting a
  replacement`` (one a firing at most; a worker ended while the host stops is not replaced), any other fails the
  run.

Marked ``faults``, ``cluster`` and ``chaos``: ``make test-faults`` runs it with the rest, ``make test-chaos`` alone;
``make test`` deselects ``cluster``. The table (a row a run, then the totals) is printed once the module's last run
has ended; its runs' rows stay out of the fault table.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from producer_tools.servers.apache_kafka import ApacheKafka
from tests.integration.faults.cluster import (
    CHAOS_SCENARIO,
    Fault,
    Pace,
    frozen_broker,
    leader_kill,
    rolling_restart,
    scored_through,
    watchdog_firings,
)
from tests.integration.faults.support import TABLE, Row
from tests.integration.harness import Lanes

pytestmark = [pytest.mark.faults, pytest.mark.cluster, pytest.mark.chaos, pytest.mark.timeout(900)]
RUNS = int(os.environ.get("CRM_CHAOS_RUNS", "30"))
GUARANTEES = ("at_least_once", "exactly_once")
FAULTS = ("leader_kill", "rolling_restart", "frozen")
DOWN_S = 15.0
PAUSE_S = 20.0
HANG_S = 200.0
COMMAND = "make test-chaos  # pytest -q -m chaos -s tests/integration/faults/test_chaos.py"
PACE = Pace(workers=2, warm=2000, after_s=HANG_S + 60, hang_s=HANG_S, stop_s=HANG_S)


@dataclass(frozen=True)
class Plan:
    """Run ``number`` of the chaos run: its guarantee and its fault."""

    number: int

    @property
    def guarantee(self) -> str:
        return GUARANTEES[self.number % 2]

    @property
    def fault(self) -> str:
        return FAULTS[(self.number - 1) % len(FAULTS)]

    @property
    def name(self) -> str:
        return f"run{self.number:02d}-{self.guarantee}-{self.fault}"


@dataclass(frozen=True)
class ChaosRow:
    """One run in the chaos table; ``outcome`` is None when the run failed before its outcome was read back."""

    run: str
    guarantee: str
    fault: str
    outcome: Row | None
    watchdog_firings: int
    seconds: float
    failure: str = ""  # the first line of what failed the run ("hang: ..."), "" when it passed


def format_chaos_table(rows: Sequence[ChaosRow]) -> list[str]:
    """The rows as a Markdown table, then one line of totals."""
    lines = [
        "| run | guarantee | fault | produced | scored | duplicates | lost | watchdog firings | seconds | failure |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        o = r.outcome
        figures = [f"{n:,}" for n in (o.produced, o.scored, o.duplicates, o.lost)] if o else ["-"] * 4
        lines.append(
            f"| {r.run} | {r.guarantee} | {r.fault} | {' | '.join(figures)} | {r.watchdog_firings} | "
            f"{r.seconds:.0f} | {r.failure} |"
        )

    def total(guarantee: str | None, figure: Callable[[Row], int]) -> int:
        return sum(figure(r.outcome) for r in rows if r.outcome and guarantee in (None, r.guarantee))

    failed = sum(1 for r in rows if r.failure)
    hangs = sum(1 for r in rows if r.failure.startswith("hang"))
    lines.append("")
    lines.append(
        f"totals: {len(rows)} runs ({failed} failed), {hangs} hangs, lost {total(None, lambda o: o.lost):,}, "
        f"exactly-once duplicates {total('exactly_once', lambda o: o.duplicates):,}, "
        f"at-least-once duplicates {total('at_least_once', lambda o: o.duplicates):,}, "
        f"watchdog firings {sum(r.watchdog_firings for r in rows)}"
    )
    return lines


@pytest.fixture(scope="module")
def chaos_table(request: pytest.FixtureRequest) -> Iterator[list[ChaosRow]]:
    """The runs' rows; printed (whatever the capture) once the module's last run has ended."""
    rows: list[ChaosRow] = []
    yield rows
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    if rows and terminal is not None:
        terminal.ensure_newline()
        terminal.section("cluster chaos run: no hang, nothing lost, exactly-once without duplicates")
        for line in [COMMAND, "", *format_chaos_table(sorted(rows, key=lambda row: row.run))]:
            terminal.write_line(line)


def make_fault(plan: Plan, cluster: ApacheKafka, lanes: Lanes) -> Fault:
    if plan.fault == "leader_kill":
        return leader_kill(cluster, lanes, plan.guarantee, DOWN_S)
    if plan.fault == "rolling_restart":
        return rolling_restart(cluster)
    return frozen_broker(cluster, lanes, PAUSE_S)


def first_line(error: BaseException) -> str:
    """What failed a run, as one table cell."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return lines[0].replace("|", "/")[:120]


@pytest.mark.parametrize("plan", [Plan(n) for n in range(1, RUNS + 1)], ids=lambda plan: plan.name)
def test_chaos_run(
    plan: Plan, kafka_cluster: ApacheKafka, cluster_lanes: Lanes, tmp_path: Path, chaos_table: list[ChaosRow]
) -> None:
    started = time.monotonic()
    scenario = f"{CHAOS_SCENARIO} {plan.name}"
    failure = ""
    try:
        run = scored_through(
            cluster_lanes,
            tmp_path,
            plan.guarantee,
            1000 + plan.number,
            make_fault(plan, kafka_cluster, cluster_lanes),
            PACE,
        )
        run.check(scenario)
    except BaseException as exc:  # recorded in the chaos table, then the run fails as it would have
        failure = first_line(exc)
        raise
    finally:
        firings = sum(watchdog_firings(log.read_text(errors="replace")) for log in tmp_path.glob("scorer-*.log"))
        outcome = next((row for row in TABLE if row.scenario == scenario), None)
        seconds = time.monotonic() - started
        chaos_table.append(ChaosRow(plan.name, plan.guarantee, plan.fault, outcome, firings, seconds, failure))
        print(
            f"[{plan.name}] watchdog firings {firings}, {seconds:.0f} s" + (f", FAILED: {failure}" if failure else "")
        )
