"""How fast the monitor's retraining trigger fires after a bank changes its policy, and how often it fires
when nothing changed; beside the ADWIN detector alone. Offline, no broker.

The world's events are scored with the committed models (the feature pipeline serving uses), answered by
the world's outcomes (``plan_outcomes``: routing, lost and re-sent outcomes, the policy change), and each
bank's outcomes are fed in event order (the order a live stream has them) to the monitor's
own ADWIN detectors (``windows.Detectors``) and trigger (``trigger.decide``), evaluated every ``--every``
outcomes of the bank. Re-sent outcomes are dropped, as the monitor's join counts them once.

    .venv/bin/python scripts/trigger_study.py --seeds 1 2 3 4 5 --sizes 1.0 0.5 0.25

prints one line per (seed, change size) and the false alarms per 100k outcomes over the baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from consumer.monitor.join import JoinedRow
from consumer.monitor.quality import quality
from consumer.monitor.settings import MonitorSettings
from consumer.monitor.trigger import Decision, TriggerBounds, decide
from consumer.monitor.windows import Detectors, detector_recent
from models.artifacts import load_models
from models.config import ModelsConfig
from models.features import build_features
from producer_tools.world import generate
from producer_tools.world.outcomes import OutcomeDraws, PolicyChange, Truth, plan_outcomes

BATCH = 2000


class MemoryChanges(dict[bytes, bytes]):
    """The detectors' state in memory (the monitor keeps it in its store)."""

    def put(self, key: bytes, value: bytes) -> None:
        self[key] = value

    def add(self, key: bytes, amount: int = 1) -> None:
        self[key] = b"%d" % (int(self.get(key) or 0) + amount)


@dataclass
class Outcome:
    index: int  # the world event it answers
    probability: float
    positive: bool


@dataclass
class Stream:
    """One model's outcomes fed in order to its detector, the trigger evaluated every ``every`` outcomes."""

    model: str
    bounds: TriggerBounds
    settings: MonitorSettings
    every: int
    probability: list[float] = field(default_factory=list)
    positive: list[float] = field(default_factory=list)
    fired_at: int = 0
    firings: int = 0

    def __post_init__(self) -> None:
        d = self.settings.detector
        self.detectors, self.changes = Detectors(d.min_instances, d.delta), MemoryChanges()

    def feed(self, outcome: Outcome) -> tuple[bool, Decision | None]:
        """Feed one outcome: whether the detector fired on it, and the trigger's decision when one is due."""
        row = JoinedRow("o", "a", "s", self.model, "v", outcome.probability, False, outcome.positive, 0, 0, None, None)
        fired = bool(self.detectors.update(self.changes, [row]))
        self.probability.append(outcome.probability)
        self.positive.append(float(outcome.positive))
        fed = len(self.probability)
        if fired:
            self.fired_at, self.firings = fed, self.firings + 1
        if fed % self.every:
            return fired, None
        q = self.settings.quality
        recent = detector_recent(fed, self.fired_at, self.firings, q.count_window)
        window = self.bounds.window
        p, y = np.array(self.probability[-window:]), np.array(self.positive[-window:])
        return fired, decide(p, y, fed, recent, self.bounds, q.min_outcomes)


def scored(count: int, seed: int) -> tuple[list[dict[str, Any]], list[Truth]]:
    """The world's ``count`` events scored with the committed models (the serving feature pipeline, each
    bank's probability and threshold): what the routing and the monitor read of a score result."""
    batch = generate(count, seed)
    models = load_models(ModelsConfig())
    scores: list[dict[str, Any]] = []
    for start in range(0, len(batch.events), BATCH):
        events = batch.events[start : start + BATCH]
        frame = build_features(events)
        banks = [(b, b.probability(frame.columns(b.features))) for b in models.banks]
        for i, event in enumerate(events):
            scores.append(
                {
                    "event_id": event["event_id"],
                    "application_id": event["application_id"],
                    "scored_at": 0,
                    "banks": [
                        {"bank": b.name, "probability": float(p[i]), "approved": bool(p[i] >= b.threshold)}
                        for b, p in banks
                    ],
                }
            )
    truths = [Truth(i, t, e) for i, (e, t) in enumerate(zip(batch.events, batch.truth, strict=True))]
    return scores, truths


def outcomes(
    scores: Sequence[dict[str, Any]], truths: Sequence[Truth], seed: int, policy: PolicyChange | None, first: int = 0
) -> Iterator[tuple[str, Outcome]]:
    """Each bank decision, in event order from event ``first``, once (re-sends dropped)."""
    for score, truth in zip(scores[first:], truths[first:], strict=True):
        if not score:
            continue
        probability = {str(b["bank"]): float(b["probability"]) for b in score["banks"]}
        for planned in plan_outcomes(score, truth, seed, OutcomeDraws(), policy, with_lead=False):
            if not planned.duplicate:
                bank = str(planned.record["bank"])
                yield bank, Outcome(truth.index, probability[bank], bool(planned.record["positive"]))


@dataclass
class ChangeRun:
    seed: int
    size: float
    trigger: int | None = None  # bank outcomes past the change when the trigger fired
    signals: str = "-"
    adwin: int | None = None
    before: int = 0  # trigger firings before the change (false alarms)
    after: int = 0  # the bank's outcomes past the change that were fed


def change_run(args: argparse.Namespace, scores: Any, truths: Any, seed: int, size: float) -> ChangeRun:
    """Feed the changed bank's outcomes until trigger and detector both fired past the change (or the end)."""
    policy = PolicyChange(args.bank, args.change_at, size)
    stream, run, past, was = _stream(args, args.bank), ChangeRun(seed, size), 0, False
    for bank, outcome in outcomes(scores, truths, seed, policy):
        if bank != args.bank:
            continue
        past += outcome.index >= args.change_at
        fired, decision = stream.feed(outcome)
        if fired and past and run.adwin is None:
            run.adwin = past
        if decision is not None:
            if decision.retrain and not was and not past:
                run.before += 1
            if decision.retrain and past and run.trigger is None:
                run.trigger, run.signals = past, "+".join(decision.past)
            was = decision.retrain
        if run.trigger is not None and run.adwin is not None:
            break
    run.after = past
    return run


def baseline_run(args: argparse.Namespace, scores: Any, truths: Any, seed: int) -> tuple[int, int, int]:
    """(outcomes, trigger firings, detector firings) over every bank with no change."""
    streams: dict[str, Stream] = {}
    raised: dict[str, bool] = {}
    total = alarms = detector = 0
    for bank, outcome in outcomes(scores, truths, seed, None):
        if bank not in streams:
            streams[bank] = _stream(args, bank)
        stream = streams[bank]
        fired, decision = stream.feed(outcome)
        total, detector = total + 1, detector + fired
        if decision is not None:
            if decision.retrain and not raised.get(bank, False):
                alarms += 1
                print(
                    f"  baseline seed {seed}: {bank} at its outcome {len(stream.probability)}: "
                    f"{'+'.join(decision.past)} {_figures(decision)}",
                    flush=True,
                )
            raised[bank] = decision.retrain
    for bank, stream in sorted(streams.items()):
        q = quality(np.array(stream.probability), np.array(stream.positive))
        print(
            f"  baseline seed {seed}: {bank} n={q.outcomes} realised AUC {q.auc:.3f} expected {q.expected_auc:.3f} "
            f"ECE {q.ece:.3f} observed {q.observed_rate:.3f} predicted {q.predicted_rate:.3f}"
        )
    return total, alarms, detector


def _stream(args: argparse.Namespace, model: str) -> Stream:
    settings = MonitorSettings()
    overrides = {k: v for k, v in vars(args).items() if k in TriggerBounds.__dataclass_fields__ and v}
    return Stream(model, replace(TriggerBounds.of(settings), **overrides), settings, args.every)


def _figures(decision: Decision) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in decision.signals.items())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--events", type=int, default=30_000, help="world events per seed (the baseline)")
    parser.add_argument("--change-at", type=int, default=3000, help="the event the policy changes at")
    parser.add_argument("--bank", default="bank_c")
    parser.add_argument("--every", type=int, default=20, help="evaluate the trigger every N outcomes of a bank")
    for name in ("window", "cusum", "auc_gap", "ece_excess", "odds_ratio"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None, help="override a bound")
    args = parser.parse_args(argv)
    if args.window:
        args.window = int(args.window)
    started, runs, totals = time.monotonic(), [], [0, 0, 0]
    for seed in args.seeds:
        scores, truths = scored(args.events, seed)
        for size in args.sizes:
            runs.append(run := change_run(args, scores, truths, seed, size))
            print(
                f"seed {seed} size {size}: trigger {run.trigger} ({run.signals}), adwin {run.adwin}, "
                f"trigger before the change {run.before}",
                flush=True,
            )
        counts = baseline_run(args, scores, truths, seed)
        print(f"seed {seed} baseline: {counts[0]} outcomes, trigger {counts[1]}, adwin {counts[2]}", flush=True)
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
    _table(runs, totals)
    print(f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


def _table(runs: list[ChangeRun], totals: list[int]) -> None:
    print(
        "\n| seed | change size | trigger: outcomes past the change | signals past their bound | ADWIN alone "
        "| outcomes fed past the change | trigger firings before the change |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r.seed} | {r.size} | {_n(r.trigger)} | {r.signals} | {_n(r.adwin)} | {r.after:,} | {r.before} |")
    outcomes_, alarms, detector = totals
    per = 100_000 / max(outcomes_, 1)
    print(
        f"\nbaseline: {outcomes_:,} bank outcomes; false alarms per 100k outcomes: trigger {alarms * per:.2f} "
        f"({alarms}), ADWIN alone {detector * per:.2f} ({detector})"
    )


def _n(value: int | None) -> str:
    return "not fired" if value is None else f"{value:,}"


if __name__ == "__main__":
    raise SystemExit(main())
