"""Every run-loop test retries and backs off without pausing."""

from __future__ import annotations

import pytest

from consumer.kafka import delivery, guarantees, registry_gate


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delivery, "_RETRY_PAUSE_S", 0.0)
    monkeypatch.setattr(guarantees, "_BACKOFF_S", (0.0,))
    monkeypatch.setattr(registry_gate, "_BACKOFF_S", (0.0,))
