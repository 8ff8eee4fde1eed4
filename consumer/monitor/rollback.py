"""The rollback rule: a promoted model that does worse than its predecessor, over enough outcomes, is rolled back.

After ``crm-scorer models promote`` the model store's last record is a "promote". For every model whose version
the promotion changed, the rule compares the realised AUC of the promoted version (its outcomes since it
scores) with its predecessor's (the predecessor version's latest outcomes in the monitor's store): once the
promoted version has ``rollback_min_outcomes`` outcomes with both classes and its AUC is below the
predecessor's by more than ``rollback_margin``, the monitor rolls the store back (``ModelStore.rollback``,
verified again) and publishes the activation on the control topic, exactly as ``crm-scorer models rollback``
does, so every worker of every replica follows. One log line carries the rule's figures; the metrics carry
them too (``crm_monitor_promoted_auc``, ``crm_monitor_predecessor_auc``, ``crm_monitor_rollbacks_total``).

The two AUCs are on different applications (before and after the promotion): the shadow period's paired
comparison (``consumer.monitor.paired``) is what promotes; this rule is the guard behind it, with a margin.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from consumer.control_topic import publish
from consumer.monitor.quality import auc
from consumer.monitor.settings import MonitorSettings
from consumer.monitor.store import partition_prefix
from consumer.monitor.windows import Reader
from models.store import ModelStore, StoreError

log = logging.getLogger(__name__)
BY = "crm-scorer monitor"
# the monitor's consumer properties a producer has no use for (librdkafka warns about each)
_CONSUMER_ONLY = ("group.", "partition.assignment", "session.timeout", "enable.auto", "auto.offset", "isolation.")
_SCAN_FACTOR = 20  # rows of other versions read past, at most, per row wanted


@dataclass(frozen=True)
class Promotion:
    """The last promotion: the set promoted, the set it replaced, and the model versions it changed."""

    version: str
    previous: str
    changed: dict[str, tuple[str, str]]  # model -> (predecessor's version, promoted version)


@dataclass(frozen=True)
class RuleFigures:
    model: str
    promoted: str  # the promoted model version
    predecessor: str
    promoted_auc: float
    predecessor_auc: float
    outcomes: int  # of the promoted version
    predecessor_outcomes: int
    fires: bool

    def line(self, margin: float, version: str, previous: str) -> str:
        return (
            f"rollback rule: {self.model} {self.promoted} realised AUC {self.promoted_auc:.4f} over {self.outcomes} "
            f"outcomes vs its predecessor {self.predecessor} {self.predecessor_auc:.4f} over "
            f"{self.predecessor_outcomes}: below by {self.predecessor_auc - self.promoted_auc:.4f} > margin "
            f"{margin:.4f}; rolling model set {version} back to {previous}"
        )


def last_promotion(store: ModelStore) -> Promotion | None:
    """The promotion the store's record ends with, or None (the last change was no promotion)."""
    history = store.history()
    if len(history) < 2 or history[-1].get("action") != "promote":
        return None
    version, previous = str(history[-1]["version"]), str(history[-2]["version"])
    new, old = store.manifest(version).models, store.manifest(previous).models
    changed = {m: (old[m].version, e.version) for m, e in new.items() if m in old and old[m].version != e.version}
    return Promotion(version, previous, changed)


def versioned_rows(
    store: Reader, partitions: Iterable[int], model: str, version: str, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """(p, outcome) of ``model``'s latest ``count`` rows scored by ``version``."""
    found: list[tuple[int, float, float]] = []
    for partition in partitions:
        start = partition_prefix(partition) + f"row/{model}/".encode()
        mine = 0
        for read, (_, value) in enumerate(store.scan_back(start, start + b"\xff")):
            if mine >= count or read >= _SCAN_FACTOR * count:
                break
            row = json.loads(value)
            if row["model_version"] == version:
                mine += 1
                found.append((row["scored_at"], float(row["probability"]), float(row["positive"])))
    found.sort()
    rows = np.array(found[-count:], dtype=np.float64).reshape(-1, 3)
    return rows[:, 1], rows[:, 2]


def judge(
    model: str,
    versions: tuple[str, str],
    promoted: tuple[np.ndarray, np.ndarray],
    predecessor: tuple[np.ndarray, np.ndarray],
    margin: float,
    min_outcomes: int,
) -> RuleFigures:
    """The rule's figures for one model: it fires when the promoted version has ``min_outcomes`` outcomes and its
    realised AUC is below the predecessor's by more than ``margin``."""
    new_auc, old_auc = auc(*promoted), auc(*predecessor)
    n = int(promoted[1].size)
    fires = bool(n >= min_outcomes and predecessor[1].size >= min_outcomes and new_auc < old_auc - margin)
    return RuleFigures(model, versions[1], versions[0], new_auc, old_auc, n, int(predecessor[1].size), fires)


class RollbackRule:
    """Evaluates the rule over the monitor's store and acts on it: ``publish(key, value)`` puts a record on the
    control topic."""

    def __init__(
        self, store: ModelStore, channel: str, margin: float, min_outcomes: int, publish: Callable[[str, bytes], None]
    ) -> None:
        self._store, self._channel = store, channel
        self._margin, self._min = margin, min_outcomes
        self._publish = publish
        self.promotion: Promotion | None = None

    def figures(self, reader: Reader, partitions: Iterable[int], count: int) -> dict[str, RuleFigures]:
        """The rule's figures per model the last promotion changed (none: no promotion is being watched)."""
        try:
            self.promotion = last_promotion(self._store)
        except StoreError as exc:
            log.warning("rollback rule: cannot read the model store: %s", exc)
            self.promotion = None
        if self.promotion is None:
            return {}
        parts = sorted(partitions)
        out = {}
        for model, (old, new) in sorted(self.promotion.changed.items()):
            promoted = versioned_rows(reader, parts, model, new, count)
            predecessor = versioned_rows(reader, parts, model, old, count)
            out[model] = judge(model, (old, new), promoted, predecessor, self._margin, self._min)
        return out

    def act(self, figures: dict[str, RuleFigures]) -> list[str]:
        """Roll back when the rule fires for a model; returns the models it rolled back for."""
        firing = [f for f in figures.values() if f.fires]
        promotion = self.promotion
        if not firing or promotion is None:
            return []
        line = firing[0].line(self._margin, promotion.version, promotion.previous)
        models = list(self._store.manifest(promotion.version).models)
        try:
            activation = self._store.rollback(models, BY, line)
        except StoreError as exc:
            log.error("%s: the rollback failed: %s", line, exc)
            return []
        log.warning("%s", line)
        self._publish(self._channel, activation.to_json())
        self.promotion = None
        return [f.model for f in firing]


def rule_of(settings: MonitorSettings) -> RollbackRule | None:
    """The rollback rule when ``lifecycle.store_dir`` is set (it publishes with the monitor's connection)."""
    lifecycle = settings.lifecycle
    if lifecycle.store_dir is None:
        return None
    conf = {k: v for k, v in settings.librdkafka().items() if not k.startswith(_CONSUMER_ONLY)}
    topic = lifecycle.control_topic

    def publish_on_control_topic(key: str, value: bytes) -> None:
        publish(conf, topic, key, value)

    store = ModelStore(lifecycle.store_dir)
    return RollbackRule(
        store, lifecycle.channel, lifecycle.rollback_margin, lifecycle.rollback_min_outcomes, publish_on_control_topic
    )
