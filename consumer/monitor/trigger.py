"""The decision to retrain one model, from every signal the monitor has rather than from one detector.

Pure numpy: a model's latest outcomes (ordered by when they were scored), how many it has in all and whether
its concept-drift detector fired recently in, one ``Decision`` out. The signals, each over the latest
``window`` outcomes:

- ``cusum``: a risk-adjusted Bernoulli CUSUM (Steiner et al., 2000) on observed against predicted, one
  statistic per direction: the log-likelihood ratio of "the odds of a positive outcome are ``odds_ratio``
  times (or 1/``odds_ratio`` times) what the model predicts" against "they are what it predicts", accumulated
  from the most likely start of the change. It is a sequential test of calibration-in-the-large that weighs
  each outcome by its own prediction, so a population that merely moves to other probabilities does not
  look like a change, and where its run starts is an estimate of when the change happened.
- ``auc_gap``: the AUC the predictions expect of themselves if calibrated (CBPE-style, ``quality``) minus the
  realised AUC on the same outcomes: the ranking broke.
- ``ece_excess``: the expected calibration error minus what sampling alone gives a calibrated model with these
  probabilities (per bin, ``E|observed - predicted| = sqrt(2/pi * sum p(1-p))``), so a short window is not
  read as miscalibrated.
- ``detector``: the ADWIN detector (``windows.Detectors``) fired within the model's count window.

The CUSUM past its threshold is enough on its own (its threshold sets its false-alarm rate); the three others
are weaker alone and count only two at a time, and the bounds of the AUC gap and the ECE excess, set for a full
window, widen as ``sqrt(window / n)`` over n < ``window`` outcomes. Nothing is decided, and no signal is
exported, before the model has ``min_outcomes`` outcomes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from consumer.monitor.quality import auc, ece, expected_auc
from consumer.monitor.settings import MonitorSettings

SIGNALS = ("cusum", "auc_gap", "ece_excess", "detector")


@dataclass(frozen=True)
class TriggerBounds:
    """Where each signal counts as past its bound (the ``trigger`` settings; chosen from the world's baseline,
    docs/retraining-trigger.md)."""

    window: int = 1000
    odds_ratio: float = 2.0
    cusum: float = 12.0
    auc_gap: float = 0.05
    ece_excess: float = 0.03
    bins: int = 10

    @classmethod
    def of(cls, settings: MonitorSettings) -> TriggerBounds:
        """The bounds of the monitor's ``trigger`` settings, with its ECE bins."""
        t = settings.trigger
        return cls(t.window, t.odds_ratio, t.cusum, t.auc_gap, t.ece_excess, settings.quality.calibration_bins)


@dataclass(frozen=True)
class Decision:
    """One model's signals and what they decide. ``signals`` is empty before ``min_outcomes``."""

    retrain: bool
    outcomes: int  # in the window the signals were computed over
    signals: dict[str, float]
    past: tuple[str, ...]  # the signals past their bound
    since_change: int  # outcomes from the CUSUM's estimate of where the change began (0: no change seen)
    direction: str  # "lower" (fewer positives than predicted), "higher", or "" with no CUSUM run


def decide(
    probability: np.ndarray,
    positive: np.ndarray,
    outcomes: int,
    detector: bool,
    bounds: TriggerBounds,
    min_outcomes: int,
) -> Decision:
    """The decision for one model over its latest outcomes (``probability``, ``positive``: oldest first).

    ``outcomes`` is how many outcomes the model has joined in all; below ``min_outcomes`` nothing is decided.
    """
    if outcomes < min_outcomes or probability.size == 0:
        return Decision(False, 0, {}, (), 0, "")
    p = np.clip(np.asarray(probability[-bounds.window :], dtype=np.float64), 1e-6, 1 - 1e-6)
    y = np.asarray(positive[-bounds.window :], dtype=np.float64)
    lower, lower_run = cusum(p, y, 1.0 / bounds.odds_ratio)
    higher, higher_run = cusum(p, y, bounds.odds_ratio)
    statistic, run, direction = (lower, lower_run, "lower") if lower >= higher else (higher, higher_run, "higher")
    gap = expected_auc(p) - auc(p, y)
    signals = {
        "cusum": statistic,
        "auc_gap": gap if not math.isnan(gap) else 0.0,
        "ece_excess": ece(p, y, bounds.bins) - sampling_ece(p, bounds.bins),
        "detector": 1.0 if detector else 0.0,
    }
    widen = math.sqrt(max(bounds.window / p.size, 1.0))
    past = tuple(name for name in SIGNALS if signals[name] >= bound(name, bounds, widen))
    weak = [name for name in past if name != "cusum"]
    retrain = "cusum" in past or len(weak) >= 2
    return Decision(
        retrain, int(p.size), signals, past, run if statistic > 0 else 0, direction if statistic > 0 else ""
    )


def cusum(p: np.ndarray, y: np.ndarray, odds_ratio: float) -> tuple[float, int]:
    """The risk-adjusted Bernoulli CUSUM at the end of ``(p, y)`` and the length of its current run.

    Each outcome weighs ``y log R - log(1 - p + R p)``; the statistic is the recursion ``S = max(0, S + w)``
    started anywhere in the window, i.e. the largest sum of a suffix (0 for none), and the run is that
    suffix's length: the outcomes since the most likely start of the change.
    """
    if p.size == 0:
        return 0.0, 0
    w = y * math.log(odds_ratio) - np.log1p((odds_ratio - 1.0) * p)
    suffix = np.cumsum(w[::-1])
    best = int(np.argmax(suffix))
    statistic = float(suffix[best])
    return (statistic, best + 1) if statistic > 0 else (0.0, 0)


def sampling_ece(p: np.ndarray, bins: int = 10) -> float:
    """The ECE a calibrated model with probabilities ``p`` shows from sampling alone (normal approximation)."""
    if p.size == 0:
        return 0.0
    index = np.minimum((p * bins).astype(np.intp), bins - 1)
    variance = np.bincount(index, weights=p * (1.0 - p), minlength=bins)
    return float(np.sum(np.sqrt(2.0 / math.pi * variance)) / p.size)


def bound(name: str, bounds: TriggerBounds, widen: float = 1.0) -> float:
    """Where signal ``name`` counts: the AUC gap and the ECE excess are bounded for a full window, and their
    bounds widen as ``sqrt(window / n)`` over a window of n < ``window`` outcomes (their sampling noise)."""
    if name == "detector":
        return 1.0
    return float(getattr(bounds, name)) * (widen if name in ("auc_gap", "ece_excess") else 1.0)


def retrain_line(model: str, decision: Decision, bounds: TriggerBounds, capture_dir: object = None) -> str:
    """What a firing says: every signal with its bound (those past it first), the change's estimated start
    and the command that retrains ``model`` from the captured rows."""
    parts = []
    widen = math.sqrt(max(bounds.window / max(decision.outcomes, 1), 1.0))
    for name in sorted(SIGNALS, key=lambda n: n not in decision.past):
        value, mark = decision.signals[name], ">=" if name in decision.past else "<"
        parts.append(f"{name} {value:.3f} {mark} {bound(name, bounds, widen):.3g}")
    began = (
        f"{decision.direction} than predicted for the last {decision.since_change} outcomes"
        if decision.direction
        else "no CUSUM run"
    )
    source = capture_dir if capture_dir is not None else "CAPTURE_DIR"
    return f"{', '.join(parts)}; {began}; run: crm-train --from-capture {source} --bank {model}"
