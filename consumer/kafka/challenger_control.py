"""Every worker follows the challenger records on the control topic, like the activations.

``crm-scorer models shadow VERSION`` publishes a ``models.challengers.ShadowRecord`` under ``<channel>.shadow``
(``shadow --clear`` an empty one). A worker reads that key with a consumer of its own that joins no group
(``KafkaControlFeed``), verifies and loads the set off the hot path exactly as an activation
(``model_control.verified_set``), and the run loop hands it to the engine between two batches
(``ChallengerFollower.take``). A set that fails is refused with one log line and the same metric as a refused
activation; the champion keeps scoring, and so does the challenger already in place, if any.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from consumer.core.challenger import Challenger
from consumer.kafka.model_control import ControlFeed, ControlFollower, Refused, verified_set
from models.challengers import ShadowRecord
from models.config import ModelsConfig
from models.store import Activation, ModelStore

log = logging.getLogger(__name__)
_POLL_S = 0.5
_CLEAR = object()  # take(): the challenger was cleared


class ChallengerFollower(ControlFollower):
    """Follows one channel's challenger records in a background thread; ``take`` hands over the newest, once."""

    def __init__(
        self,
        feed: ControlFeed,
        store: ModelStore,
        config: ModelsConfig,
        refused: Callable[[str], None],
        poll_s: float = _POLL_S,
    ) -> None:
        super().__init__(feed, store, config, refused, poll_s)
        self._wanted: tuple[str, tuple[str, ...]] = ("", ())  # (version, models) in place or ready
        self._ready: object = None  # a Challenger, _CLEAR, or None: nothing new

    def take(self) -> tuple[bool, Challenger | None]:
        """(True, the challenger or None when cleared) once after a change; (False, None): nothing new."""
        if self._ready is None:
            return False, None
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is None:
            return False, None
        return True, None if ready is _CLEAR else ready  # type: ignore[return-value]

    def follow(self, value: bytes) -> None:
        try:
            record = ShadowRecord.from_json(value)
        except ValueError as exc:
            self._refuse(Refused("bad_record", f"control record: {exc}"))
            return
        if (record.version, record.models) == self._wanted:
            return
        if record.cleared:
            log.info("challenger cleared by %s (%s)", record.by, record.reason or "no reason given")
            with self._lock:
                self._ready, self._wanted = _CLEAR, ("", ())
            return
        names = ", ".join(record.models)
        log.info("challenger set %s (%s) shadowed by %s: verifying and loading", record.version, names, record.by)
        activation = Activation(record.version, record.manifest_sha256, record.at, record.by, record.reason)
        try:
            models = verified_set(self._store, self._config, activation)
        except Refused as exc:
            self._refuse(exc)
            return
        with self._lock:
            self._ready, self._wanted = Challenger(models, record.models), (record.version, record.models)

    def _refuse(self, refusal: Refused) -> None:
        log.error("%s; challenger refused, the champion keeps scoring", refusal)
        self._refused(refusal.reason)
