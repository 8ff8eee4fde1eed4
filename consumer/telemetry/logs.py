"""Logging setup: plain lines for people, one JSON object per line for log pipelines (``log.json``)."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Hashable
from typing import Any

# librdkafka's own log lines (connection failures every reconnect) come through here, once a minute per client
KAFKA_LOG = logging.getLogger("librdkafka")


class Throttle:
    """The one log throttle: ``ready(key)`` is True at most once per ``seconds`` for each key.

    Repeating failures (a broker away, a delivery retried) would otherwise log a line per attempt.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._last: dict[Hashable, float] = {}

    def ready(self, key: Hashable = None, seconds: float | None = None) -> bool:
        """True (and counted) when ``key`` was last let through ``seconds`` (default: the throttle's) ago."""
        interval = self.seconds if seconds is None else seconds
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < interval:
            return False
        self._last[key] = now
        return True


class OncePerInterval(logging.Filter):
    """Lets a given (logger, message template) through at most once per ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self._throttle = Throttle(seconds)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        key = (record.name, str(args[1] if len(args) > 1 else record.msg))  # librdkafka: (facility, client, text)
        return self._throttle.ready(key)


KAFKA_LOG.addFilter(OncePerInterval(60.0))

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., <extra fields>}``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload |= {k: v for k, v in vars(record).items() if k not in _RESERVED}
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO", json_format: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(processName)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpx2"):  # the registry client's HTTP library logs every request at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
