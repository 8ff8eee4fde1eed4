"""The switch bench's checks on results read back: lost, duplicated, mixed and misplaced results, and the
throughput and latency around a switch."""

from __future__ import annotations

from producer_tools.bench.switch_figures import ScoredResult, Switch, around, check_results, result_versions

OLD = (("lead", "lead-1"), ("bank_a", "bank_a-1"), ("bank_c", "bank_c-1"))
NEW = (("lead", "lead-2"), ("bank_a", "bank_a-2"), ("bank_c", "bank_c-2"))
SETS = {"A": OLD, "B": NEW}
SWITCHES = [Switch("activate", "B", 10_000), Switch("rollback", "A", 20_000)]


def results(plan: list[tuple[int, tuple[tuple[str, str], ...]]]) -> list[ScoredResult]:
    return [ScoredResult(ts, f"e{i}", ts - 50, versions) for i, (ts, versions) in enumerate(plan)]


def timeline() -> list[tuple[int, tuple[tuple[str, str], ...]]]:
    """A result every 100 ms for 30 s: A until 11 s, B until 21 s, A again."""
    return [(ts, NEW if 11_000 <= ts < 21_000 else OLD) for ts in range(0, 30_000, 100)]


def test_a_clean_run_reports_nothing_wrong_and_when_each_switch_reached_the_results() -> None:
    scored = results(timeline())
    checked = check_results(scored, {r.event_id for r in scored}, SETS, SWITCHES)
    assert (checked["lost"], checked["duplicates"], checked["mixed_sets"], checked["misplaced"]) == (0, 0, 0, 0)
    assert [s["first_result_ms"] for s in checked["switches"]] == [11_000, 21_000]


def test_lost_duplicated_mixed_and_misplaced_results_are_counted() -> None:
    plan = timeline()
    plan[5] = (500, NEW)  # the new set before its activation was issued
    plan[150] = (15_000, OLD)  # the old set while the new one was active
    plan[160] = (16_000, (("lead", "lead-2"), ("bank_a", "bank_a-1"), ("bank_c", "bank_c-2")))  # a mix
    scored = results(plan)
    expected = {r.event_id for r in scored} | {"never-scored"}
    scored.append(scored[0])
    checked = check_results(scored, expected, SETS, SWITCHES)
    assert checked["lost"] == 1 and checked["duplicates"] == 1
    assert checked["mixed_sets"] == 1
    assert checked["misplaced"] == 2


def test_a_result_of_an_event_sent_malformed_is_not_unexpected_but_one_never_sent_is() -> None:
    scored = results(timeline())
    valid = {r.event_id for r in scored[1:]}
    checked = check_results(scored, valid, SETS, SWITCHES, known_ids=valid | {"e0"})
    assert (checked["lost"], checked["unexpected"]) == (0, 0)
    assert check_results(scored, valid, SETS, SWITCHES, known_ids=valid)["unexpected"] == 1


def test_a_switch_whose_set_never_scored_is_reported_without_a_time() -> None:
    scored = results([(ts, OLD) for ts in range(0, 30_000, 100)])
    checked = check_results(scored, {r.event_id for r in scored}, SETS, SWITCHES)
    assert checked["switches"][0]["first_result_ms"] is None
    assert checked["misplaced"] == 0


def test_the_dip_and_the_latency_around_a_switch() -> None:
    plan = [(ts, OLD) for ts in range(0, 30_000, 10)]  # 100 results a second
    plan = [(ts, v) for ts, v in plan if not 12_000 <= ts < 12_500]  # half a second without results
    scored = [ScoredResult(ts, str(ts), ts - (80 if ts >= 11_000 else 20), v) for ts, v in plan]
    near = around(scored, 11_000)
    assert near["steady_median_per_s"] == 100
    assert near["lowest_per_s"] == 50
    assert near["dip_share"] == 0.5
    assert near["before_p99_ms"] == 20 and near["after_p50_ms"] == 80


def test_result_versions_reads_the_lead_and_every_bank() -> None:
    result = {
        "lead": {"model_version": "lead-2"},
        "banks": [{"bank": "bank_c", "model_version": "bank_c-2"}, {"bank": "bank_a", "model_version": "bank_a-2"}],
    }
    assert result_versions(result) == NEW
