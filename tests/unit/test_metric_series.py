"""Every series whose labels are known exists at zero from the start, so rate() counts the first increase."""

from __future__ import annotations

from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from consumer.telemetry.metrics import DEAD_LETTER_REASONS, STAGES, ScorerMetrics

ROOT = Path(__file__).resolve().parents[2]


def contract_reasons() -> set[str]:
    spec = yaml.safe_load((ROOT / "schemas" / "asyncapi.yaml").read_text(encoding="utf-8"))
    (headers,) = [
        message["headers"]
        for message in spec["components"]["messages"].values()
        if "dlq.reason" in message.get("headers", {}).get("properties", {})
    ]
    return set(headers["properties"]["dlq.reason"]["enum"])


def test_the_reasons_exported_are_the_contracts() -> None:
    assert set(DEAD_LETTER_REASONS) == contract_reasons()


def test_every_dead_letter_reason_is_at_zero_before_the_first_dead_letter() -> None:
    registry = CollectorRegistry()
    ScorerMetrics(registry)
    assert DEAD_LETTER_REASONS
    for reason in DEAD_LETTER_REASONS:
        assert registry.get_sample_value("crm_scorer_dead_letters_total", {"reason": reason}) == 0.0, reason


def test_stage_and_unlabelled_histograms_are_at_zero_from_the_start() -> None:
    registry = CollectorRegistry()
    ScorerMetrics(registry)
    for stage in STAGES:
        assert registry.get_sample_value("crm_scorer_stage_seconds_count", {"stage": stage}) == 0.0, stage
    assert registry.get_sample_value("crm_scorer_end_to_end_latency_seconds_count") == 0.0
    assert registry.get_sample_value("crm_scorer_batch_size_count") == 0.0
