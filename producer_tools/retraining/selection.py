"""The selection report: what training a bank on its routed rows costs, and whether a correction wins it back.

After a bank changes its policy, its new labels exist only for the applications the routing rule sent it (the
rule ranks by the *old* models' scores). The study builds a capture of the world with that change
(``world_capture``), then trains the bank four ways on the post-change events before an evaluation cut and
evaluates each on **every** application after the cut with the world's own labels (drawn from the changed
policy's true probability for every application, routed or not):

- **routed only**: ``crm-train --from-capture`` as it is, on the bank's routed rows;
- **all labels**: the same fit on the world's labels for every application (what selection hides);
- **IPW**: the routed rows weighted by the inverse of their estimated routing propensity (a classifier of
  routed vs not on the same features, clipped at ``PROPENSITY_FLOOR``), the textbook correction;
- **warm start**: the routed rows, continuing the parent model's booster (``crm-train --warm-start``): the
  parent's trees carry what it learned of the applications the rule never sends to the bank.

The parent model unchanged and the world's oracle (the changed policy's true probability) frame them. A
correction "measurably helps" when a paired bootstrap of its AUC gain over routed-only on the evaluation
applications keeps the 95% interval above zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from consumer.settings import load_settings
from models.artifacts import load_models
from models.calibration import sigmoid
from models.capture_rows import CapturedRows, read_capture
from models.capture_training import SelectedLabels, fit_bank, selected
from models.config import BankConfig
from models.evaluation import expected_calibration_error
from models.features import build_features
from producer_tools.retraining.world_capture import capture_world, world_of
from producer_tools.world import WorldBatch
from producer_tools.world.observed import observe
from producer_tools.world.outcomes import PolicyChange, tightened_logit

PROPENSITY_FLOOR = 0.05
BOOTSTRAP = 300


@dataclass(frozen=True)
class SelectionStudy:
    """The world, the policy change, and the share of post-change events held out for evaluation."""

    count: int = 80_000
    seed: int = 5
    policy: PolicyChange = field(default_factory=lambda: PolicyChange("bank_c", 20_000))
    evaluation: float = 0.25
    training_seed: int = 7

    @property
    def cut(self) -> int:
        """The first evaluation event: events from the change up to here are the training period."""
        return self.policy.from_event + int((self.count - self.policy.from_event) * (1 - self.evaluation))


@dataclass(frozen=True)
class Variant:
    """One way of training the bank, evaluated on every evaluation application and on the routed ones."""

    name: str
    rows: int
    auc: float
    ece: float
    routed_auc: float
    gain: tuple[float, float, float] | None = None  # AUC gain over routed-only: mean, 2.5%, 97.5%


@dataclass
class SelectionReport:
    study: SelectionStudy
    capture_line: str
    evaluated: int
    routed_share: float
    variants: list[Variant] = field(default_factory=list)

    def oracle(self) -> Variant:
        return next(v for v in self.variants if v.name == "oracle")

    def lines(self) -> list[str]:
        """The report as Markdown: the table, then what is kept."""
        oracle = self.oracle().auc
        bank = self.study.policy.bank
        out = [
            f"{bank} after its policy change at event {self.study.policy.from_event:,} of {self.study.count:,} "
            f"(seed {self.study.seed}); evaluated on the {self.evaluated:,} applications after event "
            f"{self.study.cut:,}, {self.routed_share:.1%} of them routed to {bank}",
            "",
            "| model | training rows | AUC (all applications) | AUC / oracle | ECE | AUC (routed) "
            "| gain vs routed-only [95%] |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for v in self.variants:
            gain = "-" if v.gain is None else f"{v.gain[0]:+.4f} [{v.gain[1]:+.4f}, {v.gain[2]:+.4f}]"
            rows = f"{v.rows:,}" if v.rows else "-"
            out.append(
                f"| {v.name} | {rows} | {v.auc:.4f} | {v.auc / oracle:.3f} | {v.ece:.4f} | {v.routed_auc:.4f} "
                f"| {gain} |"
            )
        return [*out, "", *self.verdict()]

    def verdict(self) -> list[str]:
        oracle = self.oracle().auc
        routed = next(v for v in self.variants if v.name == "routed only")
        lines = [f"target: routed-only or corrected >= 0.97 x oracle = {0.97 * oracle:.4f}"]
        for v in self.variants:
            if v.gain is not None:
                verdict = "helps" if v.gain[1] > 0 else "does not measurably help"
                ratios = f"{v.auc / oracle:.3f} x oracle against routed-only {routed.auc / oracle:.3f}"
                lines.append(f"{v.name}: {verdict} ({ratios})")
        return lines


def run_study(study: SelectionStudy, capture_dir: Path, log: Callable[[str], None] = print) -> SelectionReport:
    """Capture the world with ``study``'s policy change under ``capture_dir``, train and evaluate every variant."""
    world = world_of(study.count, study.seed)
    log(capture_world(capture_dir, world, study.seed, study.policy, log=log).line())
    rows = read_capture(capture_dir)
    log(rows.summary.line())
    return evaluate_variants(study, world, rows, log)


def evaluate_variants(
    study: SelectionStudy, world: WorldBatch, rows: CapturedRows, log: Callable[[str], None] = print
) -> SelectionReport:
    """Every variant of the bank trained on the training period of ``rows``, evaluated after the cut."""
    bank_name = study.policy.bank
    settings = load_settings(None)
    bank = next(b for b in settings.models.banks if b.name == bank_name)
    parent = next(b for b in load_models(settings.models).banks if b.name == bank_name)
    p_true = sigmoid(tightened_logit(bank_name, observe(world.events), study.policy.size))
    y_world = (np.random.default_rng([study.seed, 1]).random(len(p_true)) < p_true).astype(np.int8)
    index = {str(e["event_id"]): i for i, e in enumerate(world.events)}
    row_event = np.array([index[e] for e in rows.score_event_id.tolist()])
    change, cut = study.policy.from_event, study.cut
    routed = np.zeros(len(world.events), dtype=bool)
    routed[row_event[rows.model == bank_name]] = True
    training = selected(rows.subset((row_event >= change) & (row_event < cut)), bank_name)
    period = np.arange(change, cut)
    evaluation = np.arange(cut, len(world.events))
    scored = _Scorer(world.events, evaluation, y_world, routed)
    fit = _Fitter(bank, study.training_seed, log)
    report = SelectionReport(study, rows.summary.line(), len(evaluation), float(routed[evaluation].mean()))
    base = scored.variant("routed only", len(training.y), fit(training).probability(scored.events))
    everyone = SelectedLabels(bank_name, [world.events[i] for i in period], y_world[period], ())
    weights = _ipw(world.events, period, routed, bank, training, row_event, rows, change, cut)
    n = len(training.y)
    ipw = fit(training, weights).probability(scored.events)
    warm = fit(training, base=parent.booster).probability(scored.events)
    report.variants = [
        scored.variant("parent (unchanged)", 0, parent.probability(scored.features(bank.features))),
        base,
        scored.variant("all labels", len(period), fit(everyone).probability(scored.events)),
        scored.against(base, "IPW (routing propensity)", n, ipw),
        scored.against(base, "warm start from parent", n, warm),
        scored.variant("oracle", 0, p_true[evaluation]),
    ]
    return report


class _Fitter:
    def __init__(self, bank: BankConfig, seed: int, log: Callable[[str], None]) -> None:
        self._bank, self._seed, self._log = bank, seed, log

    def __call__(self, labels: SelectedLabels, weight: np.ndarray | None = None, base: Any = None) -> Any:
        return fit_bank(labels, self._bank, self._seed, log=self._log, weight=weight, base=base)


class _Scorer:
    """Evaluation on the applications after the cut, with the world's labels."""

    def __init__(self, events: Sequence[dict[str, Any]], rows: np.ndarray, y: np.ndarray, routed: np.ndarray) -> None:
        self.events = [events[i] for i in rows]
        self._y, self._routed = y[rows], routed[rows]
        self._frame = build_features(self.events)
        self._draws = np.random.default_rng(0).integers(0, len(rows), size=(BOOTSTRAP, len(rows)))
        self._p: dict[str, np.ndarray] = {}

    def features(self, names: Sequence[str]) -> np.ndarray:
        return self._frame.columns(names)

    def variant(self, name: str, rows: int, p: np.ndarray) -> Variant:
        self._p[name] = p
        y, routed = self._y, self._routed
        auc = float(roc_auc_score(y, p))
        return Variant(name, rows, auc, expected_calibration_error(y, p), float(roc_auc_score(y[routed], p[routed])))

    def against(self, base: Variant, name: str, rows: int, p: np.ndarray) -> Variant:
        """``variant`` with its AUC gain over ``base`` and the paired bootstrap interval of that gain."""
        v, q = self.variant(name, rows, p), self._p[base.name]
        gains = np.array([roc_auc_score(self._y[d], p[d]) - roc_auc_score(self._y[d], q[d]) for d in self._draws])
        return Variant(**{**v.__dict__, "gain": (v.auc - base.auc, *np.quantile(gains, [0.025, 0.975]).tolist())})


def _ipw(
    events: Sequence[dict[str, Any]],
    period: np.ndarray,
    routed: np.ndarray,
    bank: BankConfig,
    training: SelectedLabels,
    row_event: np.ndarray,
    rows: CapturedRows,
    change: int,
    cut: int,
) -> np.ndarray:
    """Inverse routing propensity of each training row (mean 1): a classifier of routed vs not over the period."""
    import xgboost as xgb

    x = build_features([events[i] for i in period]).columns(bank.features)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.1, "nthread": 2, "seed": 0}
    model = xgb.train(params, xgb.DMatrix(x, label=routed[period].astype(np.int8), missing=np.nan), 200)
    propensity = model.predict(xgb.DMatrix(x, missing=np.nan))
    mine = (rows.model == bank.name) & (row_event >= change) & (row_event < cut)
    p = propensity[row_event[mine] - change]
    assert len(p) == len(training.y)
    w = 1.0 / np.clip(p, PROPENSITY_FLOOR, 1.0)
    return w / w.mean()
