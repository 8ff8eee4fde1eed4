"""Time-keeping for a produce run: the pacing token bucket and the progress bar on stderr.

Both take a clock so tests drive them without sleeping; neither sleeps itself. The caller waits as told,
ideally inside ``Producer.poll(timeout)`` so delivery reports are served while it waits (no busy loop).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Clock = Callable[[], float]

# Tokens the bucket may hold: 50 ms worth of events, so a fast rate sends small bursts instead of waking
# the producer for every single event.
_BURST_SECONDS = 0.05
_BAR_WIDTH = 24


class Pacer:
    """A token bucket admitting ``rate`` events per second on average; ``rate`` 0 admits everything at once."""

    def __init__(self, rate: float, *, clock: Clock = time.monotonic) -> None:
        if rate < 0:
            raise ValueError(f"rate: must be >= 0 events/s, got {rate}")
        self.rate = rate
        self._clock = clock
        self._capacity = max(1.0, rate * _BURST_SECONDS)
        self._tokens = 1.0
        self._last = clock()

    def wait_time(self) -> float:
        """Seconds to wait before the next event may go; 0 means it may go now (its token is taken)."""
        if self.rate == 0:
            return 0.0
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


class ProgressBar:
    """A one-line progress bar redrawn in place, at most every ``min_interval`` seconds.

    It is off (draws nothing) unless ``stream`` is a terminal, so logs and pipes stay clean; ``enabled``
    overrides that. ``total`` None draws a counter instead of a bar.
    """

    def __init__(
        self,
        total: int | None,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        min_interval: float = 0.25,
        clock: Clock = time.monotonic,
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        self.enabled = _is_terminal(self._stream) if enabled is None else enabled
        self._total = total
        self._min_interval = min_interval
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None
        self._done = 0
        self._failed = 0

    def update(self, done: int, failed: int = 0) -> None:
        """Record ``done`` messages sent (``failed`` of them not delivered); redraw if enough time passed."""
        self._done, self._failed = done, failed
        if not self.enabled:
            return
        now = self._clock()
        if self._drawn_at is None or now - self._drawn_at >= self._min_interval:
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(self._clock())
            self._stream.write("\n")
            self._stream.flush()

    def render(self, now: float) -> str:
        """The bar's text at time ``now`` (without the carriage return)."""
        elapsed = max(now - self._started, 1e-9)
        rate = f"{self._done / elapsed:,.0f} ev/s"
        failed = f"  failed {self._failed}" if self._failed else ""
        if not self._total:
            return f"{self._done:,} sent  {rate}{failed}"
        share = min(1.0, self._done / self._total)
        filled = round(share * _BAR_WIDTH)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        return f"[{bar}] {self._done:,}/{self._total:,} {share:4.0%}  {rate}{failed}"

    def _draw(self, now: float) -> None:
        self._drawn_at = now
        self._stream.write("\r" + self.render(now) + "\x1b[K")  # erase what a longer earlier line left
        self._stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or bare stream is no terminal
        return False
