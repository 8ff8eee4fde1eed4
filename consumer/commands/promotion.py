"""The monitor's verdict on a challenger, as ``crm-scorer models promote`` reads it from the monitor's metrics.

The monitor computes the paired comparison (``consumer.monitor.paired``: both models on the same outcomes) and
exports it per model; promotion needs ``crm_monitor_challenger_wins{model} == 1`` (docs/model-lifecycle.md).
"""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from schemas.errors import ConfigError

_FIGURES = {
    "crm_monitor_challenger_wins": "wins",
    "crm_monitor_challenger_paired_outcomes": "outcomes",
    "crm_monitor_challenger_auc_difference": "auc_difference",
    "crm_monitor_challenger_auc_difference_lower_bound": "lower_bound",
    "crm_monitor_challenger_brier": "challenger_brier",
    "crm_monitor_champion_paired_brier": "champion_brier",
}


@dataclass(frozen=True)
class Verdict:
    model: str
    wins: bool
    outcomes: int
    auc_difference: float
    lower_bound: float
    challenger_brier: float
    champion_brier: float

    def line(self) -> str:
        verdict = "wins" if self.wins else "does not win"
        return (
            f"{self.model}: challenger AUC minus champion {self.auc_difference:+.4f} (95% lower bound "
            f"{self.lower_bound:+.4f}) over {self.outcomes} paired outcomes, Brier {self.challenger_brier:.4f} vs "
            f"{self.champion_brier:.4f}: {verdict}"
        )


def parse_verdict(text: str, model: str) -> Verdict:
    """The verdict on ``model``'s challenger from the monitor's metrics text (no figure yet: it does not win)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = _FIGURES.get(sample.name)
            if key is not None and sample.labels.get("model") == model:
                found[key] = float(sample.value)
    nan = math.nan
    return Verdict(
        model,
        found.get("wins", 0.0) == 1.0,
        int(found.get("outcomes", 0)),
        found.get("auc_difference", nan),
        found.get("lower_bound", nan),
        found.get("challenger_brier", nan),
        found.get("champion_brier", nan),
    )


def read_verdict(url: str, model: str, timeout_s: float = 10.0) -> Verdict:
    """Raises ConfigError (one line naming the URL) when the monitor's metrics cannot be read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the monitor's verdict at {url} ({exc}): pass --monitor URL") from exc
    return parse_verdict(text, model)
