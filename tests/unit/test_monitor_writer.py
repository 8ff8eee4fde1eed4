"""One writer per monitor group: a monitor joins only an empty group, and of two that joined at once the one with
the greater member id yields."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumer.monitor.writer import WriterLease


class Group:
    def __init__(self, *members: str, error: int | None = None) -> None:
        self.members = list(members)
        self.error = error

    def __call__(self, group: str) -> list[str]:
        if self.error is not None:
            raise KafkaException(KafkaError(self.error))
        return self.members


def test_an_empty_or_unknown_group_is_free_and_one_with_a_member_is_not() -> None:
    assert WriterLease("g", Group()).free()
    assert WriterLease("g", Group(error=KafkaError.GROUP_ID_NOT_FOUND)).free()
    assert not WriterLease("g", Group("consumer-1-aaa")).free()


def test_a_broker_away_holds_the_standby_back() -> None:
    assert not WriterLease("g", Group(error=KafkaError._TRANSPORT)).free()


def test_a_refused_describe_does_not_hold_anyone_back_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    lease = WriterLease("g", Group(error=KafkaError.GROUP_AUTHORIZATION_FAILED))
    with caplog.at_level(logging.INFO, "consumer.monitor.writer"):
        assert lease.free() and lease.free()
    assert caplog.text.count("one writer is not enforced") == 1


def test_of_two_members_that_joined_at_once_only_the_greater_id_yields() -> None:
    group = Group("consumer-1-b", "consumer-1-a")
    lease = WriterLease("g", group)
    assert lease.yields("consumer-1-b")
    assert not lease.yields("consumer-1-a")
    group.members = ["consumer-1-a"]
    assert not lease.yields("consumer-1-a"), "alone: writes"
    group.error = KafkaError._TRANSPORT
    assert not lease.yields("consumer-1-b"), "the group unknown for now: nobody yields on a guess"
