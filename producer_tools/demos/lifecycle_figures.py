"""The model-loop demo's figures: bank_c's realised quality read back from the monitor's capture, the issue's
targets measured against the world, and the PNG of realised AUC and ECE over outcome time.

Pure but for reading the capture's Parquet files and writing the PNG. A captured row is one outcome with the
score it answers (model version, probability as scored, the bank's decision); the world knows every
application's index, so a row is placed before or after the policy change, and its arrival in the demo is its
score's time plus the world's decision delay divided by the demo's time scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from models.artifacts import load_models
from models.calibration import sigmoid
from models.config import ModelsConfig
from models.evaluation import expected_calibration_error
from models.features import build_features
from producer_tools.world.observed import observe
from producer_tools.world.outcomes import PolicyChange, tightened_logit

WINDOW = 400  # outcomes per point of the plot's rolling figures
STEP = 50


@dataclass(frozen=True)
class BankRows:
    """One bank's captured outcomes (deduplicated on outcome id), in the order they reached the monitor."""

    version: np.ndarray  # str: the model version that scored the application
    probability: np.ndarray
    positive: np.ndarray  # int8
    event_index: np.ndarray  # the application's index in the world
    arrived_ms: np.ndarray  # wall-clock ms when the outcome was sent
    event_id: np.ndarray  # str: the scored event

    def mask_quality(self, keep: np.ndarray) -> Quality:
        return quality(self.positive[keep], self.probability[keep])


@dataclass(frozen=True)
class Quality:
    outcomes: int
    auc: float
    ece: float

    def text(self) -> str:
        return f"AUC {self.auc:.3f}, ECE {self.ece:.3f} over {self.outcomes:,} outcomes"


def quality(y: np.ndarray, p: np.ndarray) -> Quality:
    """AUC and ECE (10 equal-width bins, as the monitor's) of ``p`` against ``y``; NaN where undefined."""
    if len(y) == 0 or len(set(y.tolist())) < 2:
        return Quality(len(y), float("nan"), float("nan"))
    return Quality(len(y), float(roc_auc_score(y, p)), expected_calibration_error(y, p))


def calibrated_ece(p: np.ndarray, draws: int = 200, seed: int = 0, bins: int = 10) -> tuple[float, float]:
    """The ECE's sampling noise at probabilities ``p``: median and 95th percentile of the ECE a perfectly
    calibrated model with these probabilities shows, its labels drawn as Bernoulli(p) ``draws`` times."""
    if p.size == 0:
        return float("nan"), float("nan")
    index = np.minimum((p * bins).astype(np.intp), bins - 1)
    expected = np.bincount(index, weights=p, minlength=bins)
    labels = np.random.default_rng(seed).random((draws, p.size)) < p
    observed = np.stack([np.bincount(index, weights=row, minlength=bins) for row in labels])
    ece = np.abs(observed - expected).sum(axis=1) / p.size  # |mean(y) - mean(p)| x share, summed over bins
    return float(np.median(ece)), float(np.percentile(ece, 95))


def read_bank_rows(capture_dir: Path, bank: str, index_of: Mapping[str, int], time_scale: float) -> BankRows:
    """``bank``'s rows of the capture under ``capture_dir`` whose event the world knows, by arrival."""
    import pyarrow.parquet as pq

    files = sorted(capture_dir.rglob("*.parquet"))
    columns = ["outcome_id", "score_event_id", "model", "model_version", "probability", "positive"]
    tables = [pq.read_table(f, columns=[*columns, "scored_at", "decided_at"]).to_pydict() for f in files]
    seen: set[str] = set()
    rows: list[tuple[Any, ...]] = []
    for table in tables:
        for i, outcome in enumerate(table["outcome_id"]):
            event = table["score_event_id"][i]
            if table["model"][i] != bank or outcome in seen or event not in index_of:
                continue
            seen.add(outcome)
            scored, decided = table["scored_at"][i], table["decided_at"][i]
            arrived = scored + (decided - scored) / time_scale
            rows.append((arrived, table["model_version"][i], table["probability"][i], table["positive"][i], event))
    rows.sort()
    return BankRows(
        version=np.array([r[1] for r in rows], dtype=object),
        probability=np.array([r[2] for r in rows], dtype=np.float64),
        positive=np.array([r[3] for r in rows], dtype=np.int8),
        event_index=np.array([index_of[r[4]] for r in rows], dtype=np.int64),
        arrived_ms=np.array([r[0] for r in rows], dtype=np.float64),
        event_id=np.array([r[4] for r in rows], dtype=object),
    )


def challenger_rows(rows: BankRows, shadow: Mapping[str, tuple[float, str]]) -> BankRows:
    """The challenger's figures on the champion's outcomes it shadowed: ``shadow`` maps a scored event to the
    challenger's probability and model version (the monitor's capture keeps the champion's rows only)."""
    keep = np.array([event in shadow for event in rows.event_id.tolist()], dtype=bool)
    events = rows.event_id[keep].tolist()
    return BankRows(
        version=np.array([shadow[e][1] for e in events], dtype=object),
        probability=np.array([shadow[e][0] for e in events], dtype=np.float64),
        positive=rows.positive[keep],
        event_index=rows.event_index[keep],
        arrived_ms=rows.arrived_ms[keep],
        event_id=rows.event_id[keep],
    )


@dataclass(frozen=True)
class Phases:
    """bank_c's realised quality before the change, after it (old model), the champion and the challenger on
    the same applications while the retrained model was shadowed, and once the retrained one is active."""

    baseline: Quality
    degraded: Quality
    shadow_champion: Quality
    shadow_challenger: Quality
    retrained: Quality


def phases(rows: BankRows, challenger: BankRows, change: int, old: str, new: str) -> Phases:
    scored_old = rows.version == old
    paired = np.isin(rows.event_id, challenger.event_id)
    return Phases(
        rows.mask_quality(scored_old & (rows.event_index < change) & ~paired),
        rows.mask_quality(scored_old & (rows.event_index >= change) & ~paired),
        rows.mask_quality(paired),
        challenger.mask_quality(np.isin(challenger.event_id, rows.event_id)),
        rows.mask_quality(rows.version == new),
    )


@dataclass(frozen=True)
class Targets:
    """The issue's targets for the retrained bank, each with what it is compared to."""

    population: int
    auc: float  # the retrained model on every application after the activation, the world's labels
    oracle: float  # the changed policy's own probability on the same applications
    parent_auc: float  # the model it replaced, same applications
    routed: int
    realised_auc: float  # as the stream scored them and the bank answered
    offline_auc: float  # the set's model scored offline on the same applications, same answers
    realised_ece: float
    noise: tuple[float, float]  # median, 95th percentile: the ECE a calibrated model shows here from sampling
    predicted: float  # mean probability on those routed applications
    observed: float  # their approval rate

    def lines(self) -> list[str]:
        ratio = self.auc / self.oracle
        gap = abs(self.realised_auc - self.offline_auc)
        return [
            f"whole post-change population ({self.population:,} applications after the activation, the world's "
            f"labels): retrained AUC {self.auc:.4f}, oracle {self.oracle:.4f}, ratio {ratio:.3f} "
            f"(target >= 0.97: {_met(ratio >= 0.97)}); the model it replaced {self.parent_auc:.4f}",
            f"routed applications answered after the activation ({self.routed:,}): realised AUC "
            f"{self.realised_auc:.4f}, offline AUC {self.offline_auc:.4f}, gap {gap:.4f} "
            f"(target <= 0.02: {_met(gap <= 0.02)}); realised ECE {self.realised_ece:.4f} "
            f"(target < 0.03: {_met(self.realised_ece < 0.03)}; sampling noise: a calibrated model with these "
            f"probabilities shows {self.noise[0]:.4f} median, {self.noise[1]:.4f} at the 95th percentile over "
            f"200 draws of its labels; approval rate {self.observed:.3f} against "
            f"{self.predicted:.3f} predicted)",
        ]


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def measure_targets(
    config: ModelsConfig,
    set_dirs: tuple[Path, Path],
    events: Sequence[dict[str, Any]],
    policy: PolicyChange,
    seed: int,
    rows: BankRows,
    new: str,
) -> Targets:
    """The targets for ``policy.bank`` retrained (``set_dirs``: the parent's and the new set's folders).

    ``events`` are the applications scored after the activation; the world's label for each is drawn from the
    changed policy's true probability (the oracle), routed or not.
    """
    bank = policy.bank
    p_true = sigmoid(tightened_logit(bank, observe(events), policy.size))
    y_world = (np.random.default_rng([seed, 1]).random(len(p_true)) < p_true).astype(np.int8)
    frame = build_features(events)
    parent, retrained = (_bank_model(config, d, bank) for d in set_dirs)
    p_new = retrained.probability(frame.columns(retrained.features))
    p_old = parent.probability(frame.columns(parent.features))
    mine = rows.version == new
    position = {str(e["event_id"]): i for i, e in enumerate(events)}
    answered = np.array([position.get(e, -1) for e in rows.event_id[mine]], dtype=np.int64)
    known = answered >= 0
    y_routed, p_stream = rows.positive[mine][known], rows.probability[mine][known]
    return Targets(
        population=len(events),
        auc=float(roc_auc_score(y_world, p_new)),
        oracle=float(roc_auc_score(y_world, p_true)),
        parent_auc=float(roc_auc_score(y_world, p_old)),
        routed=int(known.sum()),
        realised_auc=quality(y_routed, p_stream).auc,
        offline_auc=quality(y_routed, p_new[answered[known]]).auc,
        realised_ece=quality(y_routed, p_stream).ece,
        noise=calibrated_ece(p_stream, seed=seed),
        predicted=float(p_stream.mean()) if p_stream.size else float("nan"),
        observed=float(y_routed.mean()) if y_routed.size else float("nan"),
    )


def _bank_model(config: ModelsConfig, directory: Path, bank: str) -> Any:
    return next(b for b in load_models(config, directory).banks if b.name == bank)


@dataclass(frozen=True)
class Marks:
    """Where the plot marks each moment, in the bank's outcomes in arrival order (None: it did not happen): the
    first outcome of an application under the new policy, the bank's outcomes the monitor had joined when the
    trigger fired (its own figure: on a busy machine it reads behind the traffic, so a wall-clock mark falls
    late), the first outcome of an application the challenger shadowed, and the first the retrained model
    scored."""

    change: int | None
    trigger: int | None
    shadow: int | None
    activation: int | None

    @classmethod
    def of(cls, rows: BankRows, challenger: BankRows, change: int, trigger_joined: int | None, new: str) -> Marks:
        shadowed = _first(np.isin(rows.event_id, challenger.event_id))
        trigger = None if trigger_joined is None else min(trigger_joined, len(rows.positive))
        return cls(_first(rows.event_index >= change), trigger, shadowed, _first(rows.version == new))


def _first(where: np.ndarray) -> int | None:
    return int(np.argmax(where)) if where.any() else None


def rolling(rows: BankRows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(outcome count at each point's end, AUC, ECE) over windows of ``WINDOW`` outcomes every ``STEP``."""
    ends = np.arange(WINDOW, len(rows.positive) + 1, STEP)
    aucs, eces = [], []
    for end in ends:
        q = quality(rows.positive[end - WINDOW : end], rows.probability[end - WINDOW : end])
        aucs.append(q.auc)
        eces.append(q.ece)
    return ends, np.array(aucs), np.array(eces)


def plot(rows: BankRows, challenger: BankRows, marks: Marks, bank: str, out: Path) -> None:
    """bank's realised AUC and ECE over its outcomes in arrival order (the challenger's beside them on the same
    applications), the change, trigger, shadow and activation marked; written to ``out`` as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends, aucs, eces = rolling(rows)
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    top.plot(ends, aucs, color="tab:blue", label="served model")
    top.set_ylabel("realised AUC")
    bottom.plot(ends, eces, color="tab:red")
    if len(challenger.positive) >= WINDOW:
        position = {event: i for i, event in enumerate(rows.event_id.tolist())}
        c_ends, c_aucs, c_eces = rolling(challenger)
        x = np.array([position.get(challenger.event_id[end - 1], end) for end in c_ends])
        top.plot(x, c_aucs, color="tab:purple", linestyle="-.", label="challenger, same applications")
        bottom.plot(x, c_eces, color="tab:purple", linestyle="-.")
    bottom.axhline(0.03, color="grey", linestyle=":", linewidth=1)
    bottom.set_ylabel("realised ECE")
    bottom.set_xlabel(f"{bank} outcomes, in the order they arrived (each point: the last {WINDOW})")
    labelled = [
        ("policy change", marks.change, "black"),
        ("trigger fired (outcomes the monitor had joined)", marks.trigger, "tab:orange"),
    ]
    labelled += [("challenger shadowed", marks.shadow, "tab:purple"), ("promoted", marks.activation, "tab:green")]
    for label, at, colour in labelled:
        if at is None:
            continue
        for axis in (top, bottom):
            axis.axvline(at, color=colour, linestyle="--", linewidth=1, label=label if axis is top else None)
    top.legend(loc="lower left", fontsize=8)
    top.set_title(f"{bank}: realised quality through a policy change, the trigger and the retrained model")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=100)
    plt.close(figure)
