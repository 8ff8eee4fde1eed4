"""A bound on every blocking call into librdkafka on a worker's path, and what ends a worker that outlives one.

librdkafka can block inside a call that never returns (``send_offsets_to_transaction`` waiting on a request a
coordinator connection never answers). Python cannot unwind a thread stuck in C, so a call that outlives its
bound ends the worker process with an exit code naming the call (``WATCHDOG_EXIT_CODES``); the host
(``consumer.host.supervisor``) counts it as a watchdog firing and starts a replacement with the same worker
number, hence the same ``group.instance.id`` and transactional id: its ``init_transactions`` fences the old
producer, and it starts from the group's committed offsets.

The bound of a call is ``transaction.timeout.ms`` plus the timeout the call was given (:func:`bound_of`): a call
given ``t`` seconds returns within ``t`` when librdkafka is healthy, and a coordinator aborts an open transaction
by itself after the transaction timeout, so nothing a healthy broker does keeps a call longer than both.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

# One exit code per call, so the host (which only sees the exit code) names the call in its metric.
WATCHDOG_EXIT_CODES = {
    "init_transactions": 80,
    "begin_transaction": 81,
    "send_offsets_to_transaction": 82,
    "commit_transaction": 83,
    "abort_transaction": 84,
    "flush": 85,
    "close": 86,
    "commit": 87,
    "committed": 88,
}
CALL_OF_EXIT_CODE = {code: call for call, code in WATCHDOG_EXIT_CODES.items()}
Expiry = Callable[[str, float], None]  # the call and its bound, in seconds


def end_worker(call: str, bound_s: float) -> None:
    """The production expiry: one log line, then end the process at once (no unwinding, no atexit)."""
    code = WATCHDOG_EXIT_CODES.get(call, 89)
    log.critical(
        "watchdog: %s did not return within its bound of %.1f s; ending the worker (exit status %d) so the host "
        "replaces it",
        call,
        bound_s,
        code,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(code)


class CallWatchdog:
    """One thread that watches the calls armed with :meth:`bounded` and calls ``on_expiry`` for one that outlives
    its bound. The thread starts with the first armed call; calls may nest (``close`` serves a revoke that flushes).
    """

    def __init__(self, on_expiry: Expiry = end_worker, clock: Callable[[], float] = time.monotonic) -> None:
        self._on_expiry = on_expiry
        self._clock = clock
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[str, float, float]] = {}  # token -> call, bound, deadline
        self._tokens = 0
        self._thread: threading.Thread | None = None
        self.fired: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def bounded(self, call: str, bound_s: float) -> Iterator[None]:
        """Arm the watchdog for ``call`` while the block runs."""
        with self._cond:
            token, self._tokens = self._tokens, self._tokens + 1
            self._armed[token] = (call, bound_s, self._clock() + bound_s)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="call-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._armed.pop(token, None)
                self._cond.notify()

    def _watch(self) -> None:
        while True:
            with self._cond:
                expired = self._next_expired()
            if expired is not None:
                self.fired.append(expired)
                self._on_expiry(*expired)

    def _next_expired(self) -> tuple[str, float] | None:
        """Wait (holding the condition) until an armed call outlives its bound; that call, disarmed."""
        while True:
            if not self._armed:
                self._cond.wait()
                continue
            token, (call, bound_s, deadline) = min(self._armed.items(), key=lambda item: item[1][2])
            left = deadline - self._clock()
            if left <= 0:
                del self._armed[token]
                return call, bound_s
            self._cond.wait(left)


def bound_of(transaction_timeout_s: float, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    """``transaction.timeout.ms`` plus the call's own timeout (its ``timeout`` keyword or last float argument)."""
    timeout = kwargs.get("timeout")
    if timeout is None and args and isinstance(args[-1], int | float) and not isinstance(args[-1], bool):
        timeout = args[-1]
    return transaction_timeout_s + max(0.0, float(timeout or 0.0))


class Watched:
    """A Kafka client whose blocking calls run under the watchdog; every other attribute is the client's own."""

    def __init__(
        self,
        client: Any,
        watchdog: CallWatchdog,
        transaction_timeout_s: float,
        before: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self._watchdog = watchdog
        self._transaction_timeout_s = transaction_timeout_s
        self._before = before  # a fault injected before a call (tests only); None in production

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in WATCHDOG_EXIT_CODES:
            return attribute

        def bounded(*args: Any, **kwargs: Any) -> Any:
            with self._watchdog.bounded(name, bound_of(self._transaction_timeout_s, args, kwargs)):
                if self._before is not None:
                    self._before(name)
                return attribute(*args, **kwargs)

        return bounded
