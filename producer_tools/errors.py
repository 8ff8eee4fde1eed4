"""The tools' errors: what every room raises when a broker or a topic does not do as asked.

``CrmScorerError`` (``schemas.errors``)
    ``BrokerError``: a broker could not be started, did not answer, or refused a topic operation.
    ``InstructionCountError``: valgrind is missing, or the engine's run under it failed (``bench --instructions``).
"""

from __future__ import annotations

from schemas.errors import CrmScorerError


class BrokerError(CrmScorerError):
    """The broker could not be started, did not answer, or refused a topic operation."""


class InstructionCountError(CrmScorerError):
    """valgrind is missing, or the counted run failed."""
