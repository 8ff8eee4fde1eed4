"""Replaying dead letters: which of them go back to the input topic, and what stays behind per reason.

A dead letter carries the original key and value untouched (``schemas.dead_letter``), so replaying is
re-producing both; the ``dlq.*`` headers stay behind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from producer_tools.publishing.publisher import OutboundMessage
from producer_tools.publishing.topics import RecordedMessage
from schemas.dead_letter import DeadLetterInfo

NOT_A_DEAD_LETTER = "(no dlq headers)"


@dataclass
class ReplayPlan:
    """The messages to re-produce, how many per reason, and what was left out per reason."""

    messages: list[OutboundMessage] = field(default_factory=list)
    per_reason: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)


def plan_replay(dead_letters: Iterable[RecordedMessage], reasons: Collection[str] | None = None) -> ReplayPlan:
    """Select the dead letters whose ``dlq.reason`` is in ``reasons`` (all when None or empty), in order.

    Messages without dead-letter headers are skipped (counted under ``NOT_A_DEAD_LETTER``).
    """
    plan = ReplayPlan()
    for message in dead_letters:
        try:
            reason = DeadLetterInfo.from_headers(message.headers).reason
        except (KeyError, ValueError):
            plan.skipped[NOT_A_DEAD_LETTER] += 1
            continue
        if reasons and reason not in reasons:
            plan.skipped[reason] += 1
            continue
        plan.per_reason[reason] += 1
        plan.messages.append(OutboundMessage(message.key, message.value))
    return plan
