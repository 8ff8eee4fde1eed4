"""The monitor's health, for ``/healthz`` and ``/readyz`` (served beside ``/metrics`` by
``consumer.endpoints``, as the scorer's are).

``/healthz`` is 200 while the loop went round in the last ``stale_after_s`` (it polls every half second, so a
silent loop is a hung one); ``/readyz`` is 200 once the store is open and the group gave this member at least one
partition (a member with none joins, or waits as a standby, and reports nothing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from consumer.endpoints import Verdict

STALE_AFTER_S = 30.0  # the loop polls every half second: silent this long, it is hung


class MonitorHealth:
    """The loop's heartbeat and assignment; thread-safe (the HTTP server reads it)."""

    def __init__(self, stale_after_s: float = STALE_AFTER_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._stale_after_s = stale_after_s
        self._beat = clock()  # opening the store gets the same grace as a silent loop
        self._store_open = False
        self._partitions = 0
        self._lock = threading.Lock()

    def store_opened(self) -> None:
        with self._lock:
            self._store_open = True

    def beat(self) -> None:
        """The loop went round once."""
        with self._lock:
            self._beat = self._clock()

    def assigned(self, partitions: int) -> None:
        with self._lock:
            self._partitions = partitions

    def liveness(self) -> Verdict:
        with self._lock:
            age = self._clock() - self._beat
        ok = age < self._stale_after_s
        detail = (
            f"the loop went round in the last {self._stale_after_s:.0f} s"
            if ok
            else f"the loop has been silent for {age:.0f} s"
        )
        return Verdict(ok, {"loop": {"ok": ok, "detail": detail}})

    def readiness(self) -> Verdict:
        with self._lock:
            store_open, partitions = self._store_open, self._partitions
        checks: dict[str, dict[str, Any]] = {
            "store_open": {"ok": store_open, "detail": "open" if store_open else "opening the state store"},
            "partitions_assigned": {
                "ok": partitions > 0,
                "detail": f"{partitions} partition(s)"
                if partitions
                else "none yet (joining, or more monitor members than partitions)",
            },
        }
        return Verdict(all(c["ok"] for c in checks.values()), checks)
