"""The challenger: models of another set scored beside the champion, in the same batch, never the decision.

A ``Challenger`` is a verified, loaded model set and the names of the models in it that challenge the champion
(at most one challenger per model: one set holds them all). For the rows the engine scores afresh, each
challenged model scores the same feature frame as the champion; ``ShadowScores`` keeps both probabilities and
both decisions, aligned row by row. The decision published stays the champion's: the challenger's scores go
to the shadow topic (``shadow_record``) and into the comparison metrics (``Tally``, ``spearman``, ``psi``).

Pure: plain arrays in, plain values out; no Kafka, no metrics, no files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from models.artifacts import ModelSet
from models.features import FeatureFrame

LEAD = "lead"
LEAD_DECISION = 0.5  # as the monitor: a lead is called likely at p >= 0.5
PSI_BINS = 10
_PSI_FLOOR = 1e-4  # an empty bin counts as this share, so one empty bin does not make the PSI infinite


@dataclass(frozen=True)
class Challenger:
    """A loaded set whose ``names`` score in the shadow of the running set's models of the same names."""

    models: ModelSet
    names: tuple[str, ...]

    @property
    def version(self) -> str:
        return self.models.version

    def model_version(self, name: str) -> str:
        return self.models.versions()[name]


@dataclass(frozen=True)
class ShadowScores:
    """One challenged model on one batch's fresh rows: both probabilities and both decisions, row by row."""

    version: str  # the challenger model's version
    champion: np.ndarray
    challenger: np.ndarray
    champion_approved: np.ndarray
    challenger_approved: np.ndarray
    seconds: float  # the challenger's predict time for these rows

    def tally(self) -> Tally:
        return Tally.of(self)


@dataclass(frozen=True)
class Tally:
    """Decisions compared: rows scored by both, rows where they agree, and the flips each way."""

    scored: int
    agreed: int
    to_approve: int  # the champion declines, the challenger would approve
    to_decline: int  # the champion approves, the challenger would decline

    @classmethod
    def of(cls, shadow: ShadowScores) -> Tally:
        a, b = shadow.champion_approved, shadow.challenger_approved
        up = int(np.count_nonzero(~a & b))
        down = int(np.count_nonzero(a & ~b))
        return cls(int(a.size), int(a.size) - up - down, up, down)


def challenged_names(champion: ModelSet, candidate: ModelSet, wanted: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The models of ``candidate`` that challenge ``champion``: ``wanted`` if given, else every model whose
    version differs. Raises ValueError naming a wanted model the candidate or the champion does not hold."""
    ours, theirs = champion.versions(), candidate.versions()
    missing = [name for name in wanted if name not in ours or name not in theirs]
    if missing:
        raise ValueError(f"challenger set {candidate.version}: no model {', '.join(missing)} to challenge with")
    return wanted or tuple(name for name, version in theirs.items() if ours.get(name) != version)


def shadow_scores(
    challenger: Challenger, champion: ModelSet, frame: FeatureFrame, champion_p: dict[str, np.ndarray]
) -> dict[str, ShadowScores]:
    """Each challenged model's probabilities on ``frame`` beside the champion's (``champion_p``, per model)."""
    thresholds = {bank.name: bank.threshold for bank in champion.banks} | {LEAD: LEAD_DECISION}
    theirs = {bank.name: bank for bank in challenger.models.banks}
    out = {}
    for name in challenger.names:
        started = time.perf_counter()
        if name == LEAD:
            lead = challenger.models.lead
            p, threshold = lead.probability(frame.columns(lead.features).astype(np.float64)), LEAD_DECISION
        else:
            bank = theirs[name]
            p, threshold = bank.probability(frame.columns(bank.features)), bank.threshold
        seconds = time.perf_counter() - started
        mine = champion_p[name]
        version = challenger.model_version(name)
        out[name] = ShadowScores(version, mine, p, mine >= thresholds[name], p >= threshold, seconds)
    return out


def shadow_record(
    event_id: str, application_id: str, scored_at_ms: int, row: int, scores: dict[str, ShadowScores]
) -> bytes:
    """The shadow topic's value for one scored application: the score it shadows (``event_id``, as the result
    names it), when, and per challenged model [probability, approved, model version] as in the monitor's
    snapshot of a result. JSON: a record for the monitor, not part of the result contract.

    Written with a format string rather than ``json.dumps`` (a third of the cost): the ids are validated to
    ``[A-Za-z0-9._:-]`` before scoring and model versions are ours, so nothing needs escaping, and ``repr`` of a
    finite float is valid JSON (``tests/unit/test_challenger.py`` checks it reads back as ``json.dumps`` writes it).
    """
    models = ",".join(
        f'"{name}":[{float(s.challenger[row])!r},{"true" if s.challenger_approved[row] else "false"},"{s.version}"]'
        for name, s in scores.items()
    )
    return (
        f'{{"event_id":"{event_id}","application_id":"{application_id}","scored_at":{scored_at_ms},'
        f'"models":{{{models}}}}}'
    ).encode()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two aligned samples (mid-ranks for ties); NaN when either is constant."""
    if a.size < 2:
        return float("nan")
    ra, rb = _mid_ranks(np.asarray(a, dtype=np.float64)), _mid_ranks(np.asarray(b, dtype=np.float64))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = float(np.sqrt(np.sum(ra * ra) * np.sum(rb * rb)))
    return float(np.sum(ra * rb) / denominator) if denominator > 0 else float("nan")


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of ``actual`` against ``expected``, probabilities binned on equal-width bins of
    [0, 1] (the drift metrics' convention); NaN when either is empty."""
    if expected.size == 0 or actual.size == 0:
        return float("nan")
    e = np.maximum(_shares(expected, bins), _PSI_FLOOR)
    a = np.maximum(_shares(actual, bins), _PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _shares(p: np.ndarray, bins: int) -> np.ndarray:
    index = np.clip((np.asarray(p) * bins).astype(np.intp), 0, bins - 1)
    return np.bincount(index, minlength=bins) / float(p.size)


def _mid_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(1, values.size + 1)
    uniq, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    if uniq.size == values.size:
        return ranks
    return np.asarray(np.bincount(inverse, weights=ranks)[inverse] / counts[inverse])
