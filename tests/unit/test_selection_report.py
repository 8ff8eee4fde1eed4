"""The selection report's verdict: a correction helps only when its paired-bootstrap interval is above zero."""

from __future__ import annotations

from producer_tools.retraining.selection import SelectionReport, SelectionStudy, Variant
from producer_tools.world.outcomes import PolicyChange


def _report() -> SelectionReport:
    study = SelectionStudy(count=1_000, seed=1, policy=PolicyChange("bank_c", 200), evaluation=0.25)
    return SelectionReport(
        study,
        "capture: ...",
        200,
        0.45,
        [
            Variant("routed only", 500, 0.80, 0.06, 0.78),
            Variant("IPW (routing propensity)", 500, 0.801, 0.05, 0.78, (0.001, -0.002, 0.004)),
            Variant("warm start from parent", 500, 0.84, 0.01, 0.79, (0.04, 0.03, 0.05)),
            Variant("oracle", 0, 0.85, 0.01, 0.80),
        ],
    )


def test_the_report_names_the_target_and_which_correction_helps() -> None:
    lines = _report().lines()

    assert lines[0].startswith("bank_c after its policy change at event 200 of 1,000 (seed 1)")
    assert "| warm start from parent | 500 | 0.8400 | 0.988 | 0.0100 | 0.7900 | +0.0400 [+0.0300, +0.0500] |" in lines
    assert "target: routed-only or corrected >= 0.97 x oracle = 0.8245" in lines
    assert "IPW (routing propensity): does not measurably help (0.942 x oracle against routed-only 0.941)" in lines
    assert "warm start from parent: helps (0.988 x oracle against routed-only 0.941)" in lines


def test_the_evaluation_cut_leaves_the_last_share_of_post_change_events() -> None:
    assert SelectionStudy(count=1_000, policy=PolicyChange("bank_c", 200), evaluation=0.25).cut == 800
