"""A fault injected for the fault suite, read once at a worker's start from ``CRM_SCORER_FAULT_INJECT``.

``hang:<call>:<n>:<marker file>``: the n-th call of ``<call>`` (a watched librdkafka call) blocks for ever, in
the first worker process that creates ``<marker file>`` (its replacement finds the file and runs normally).
Unset in production: the watched clients then call nothing extra.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)
ENV = "CRM_SCORER_FAULT_INJECT"


def injected_hang(spec: str | None = None) -> Callable[[str], None] | None:
    """The hook a watched client runs before each blocking call; None when no fault is injected.

    Raises:
        ValueError: a spec that is not ``hang:<call>:<n>:<marker file>``.
    """
    spec = os.environ.get(ENV) if spec is None else spec
    if not spec:
        return None
    kind, call, nth, marker = [*spec.split(":", 3), "", "", ""][:4]
    if kind != "hang" or not call or not nth.isdigit() or not marker:
        raise ValueError(f"{ENV} must be hang:<call>:<n>:<marker file>, not {spec!r}")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return None  # a replacement: the fault happened once already
    seen = 0

    def before(name: str) -> None:
        nonlocal seen
        if name != call:
            return
        seen += 1
        if seen == int(nth):
            log.warning("fault injected: %s blocks for ever", call)
            threading.Event().wait()

    return before
