"""One writer per monitor group, the group itself the lease (docs/reliability.md, "The monitor's figures with more
than one member: one writer").

A monitor joins its consumer group only while no one is in it. Until then it waits as a standby: alive, not
ready, ``crm_monitor_standby`` 1, its store untouched. It takes over once the group is empty: the writer
stopped, or its session expired after a kill -9 or a lost host. Two monitors that find the group empty at the same
moment both join; each then sees the other, and every member but the one with the least member id leaves and
stands by again. So the figures, detectors, rollbacks and capture of a group always come from one member over all
partitions: what one monitor would report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)
CHECK_EVERY_S = 5.0
_DESCRIBE_S = 10.0
_CLIENT_ONLY = ("group.", "enable.auto", "auto.offset", "partition.assignment", "session.timeout", "isolation.")
Describe = Callable[[str], list[str]]  # a group's member ids; raises KafkaException when it cannot be described


class WriterLease:
    """Whether this monitor may write (join its group) or should stand by."""

    def __init__(self, group: str, describe: Describe) -> None:
        self.group = group
        self._describe = describe
        self._refused = False

    @classmethod
    def over(cls, consumer_conf: dict[str, Any]) -> WriterLease:
        """A lease on the group of ``consumer_conf`` (the monitor's consumer properties), asked through an
        AdminClient on the same connection."""
        conf = {k: v for k, v in consumer_conf.items() if not k.startswith(_CLIENT_ONLY) and not callable(v)}
        admin = AdminClient(conf)

        def describe(group: str) -> list[str]:
            description = admin.describe_consumer_groups([group], request_timeout=_DESCRIBE_S)[group].result()
            return [member.member_id for member in description.members]

        return cls(str(consumer_conf["group.id"]), describe)

    def members(self) -> list[str] | None:
        """The group's member ids; None when the group cannot be described (the broker away, or the describe
        refused: then the lease does not hold anyone back, and says so once)."""
        try:
            return self._describe(self.group)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                return []
            if error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED and not self._refused:
                self._refused = True
                # READ on a group implies DESCRIBE, so the consumer is refused too and says so in its one line
                log.info("cannot describe group %s (%s): one writer is not enforced", self.group, error.str())
            return None

    def free(self) -> bool:
        """No member in the group (or it cannot be described and describing was refused)."""
        members = self.members()
        return members == [] or (members is None and self._refused)

    def yields(self, member_id: str) -> bool:
        """Another member is in the group too and has the lesser id: this one should leave."""
        members = self.members()
        return members is not None and len(members) > 1 and member_id in members and member_id != min(members)
