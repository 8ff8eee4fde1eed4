"""The monitor's lifecycle gauges: the champion-challenger comparison and the rollback rule (labels: model only).

A challenger's own figures (AUC, Brier, ECE, ...) are the ordinary per-model gauges under the model name
``<model>:challenger``, side by side with the champion's; these are the paired ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric

from consumer.monitor.paired import Paired
from consumer.monitor.rollback import RuleFigures

PAIRED = {
    "outcomes": ("crm_monitor_challenger_paired_outcomes", "Outcomes both the champion and the challenger scored"),
    "auc_difference": (
        "crm_monitor_challenger_auc_difference",
        "Realised AUC of the challenger minus the champion's, on the same outcomes",
    ),
    "lower_bound": (
        "crm_monitor_challenger_auc_difference_lower_bound",
        "One-sided 95% lower bound of that difference (DeLong's variance for two correlated AUCs)",
    ),
    "challenger_brier": ("crm_monitor_challenger_brier", "The challenger's Brier score on the paired outcomes"),
    "champion_brier": ("crm_monitor_champion_paired_brier", "The champion's Brier score on the same outcomes"),
    "wins": (
        "crm_monitor_challenger_wins",
        "1 when the challenger wins (enough paired outcomes, AUC lower bound > 0, Brier no higher): promotable",
    ),
}
RULE = {
    "promoted_auc": ("crm_monitor_promoted_auc", "Realised AUC of the model version the last promotion made live"),
    "predecessor_auc": ("crm_monitor_predecessor_auc", "Realised AUC of the version it replaced (its last outcomes)"),
    "outcomes": ("crm_monitor_promoted_outcomes", "Outcomes of the promoted version the rollback rule judges on"),
}


def lifecycle_families(paired: Mapping[str, Paired], rule: Mapping[str, RuleFigures]) -> Iterator[Metric]:
    families = {key: GaugeMetricFamily(name, doc, labels=["model"]) for key, (name, doc) in PAIRED.items()}
    for model, figures in sorted(paired.items()):
        for key, family in families.items():
            value = float(getattr(figures, key))
            if not math.isnan(value):
                family.add_metric([model], value)
    yield from families.values()
    rules = {key: GaugeMetricFamily(name, doc, labels=["model"]) for key, (name, doc) in RULE.items()}
    for model, judged in sorted(rule.items()):
        for key, family in rules.items():
            value = float(getattr(judged, key))
            if not math.isnan(value):
                family.add_metric([model], value)
    yield from rules.values()
