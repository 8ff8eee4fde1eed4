"""Consumer lag as the Admin API counts it (log-end offset minus committed offset), from statistics and commits."""

from __future__ import annotations

from consumer.telemetry.lag import LagBook, PartitionOffsets, stats_offsets

P0, P1 = ("in", 0), ("in", 1)
UNKNOWN = -1001  # librdkafka's RD_KAFKA_OFFSET_INVALID


def test_statistics_give_the_held_partitions_and_their_offsets() -> None:
    stats = {
        "topics": {
            "in": {
                "partitions": {
                    "0": {"desired": True, "ls_offset": 90, "hi_offset": 95, "committed_offset": 40},
                    "1": {"desired": True},
                    "2": {"desired": False, "ls_offset": 9, "hi_offset": 9, "committed_offset": 1},
                    "-1": {"desired": False},
                }
            }
        }
    }
    assert stats_offsets(stats) == {P0: PartitionOffsets(90, 95, 40), P1: PartitionOffsets(-1, -1, -1)}
    assert stats_offsets({}) == {}


def test_lag_is_end_minus_committed_and_needs_both() -> None:
    book = LagBook()
    book.read_stats({P0: PartitionOffsets(100, 100, 60), P1: PartitionOffsets(50, 50, UNKNOWN)})
    assert book.lags() == {P0: 40}  # P1: the group committed nothing yet, as the Admin API would say


def test_a_commit_moves_the_lag_between_statistics() -> None:
    book = LagBook()
    book.read_stats({P0: PartitionOffsets(100, 100, 60)})
    book.committed({P0: 80}, {P0: 130})
    assert book.lags() == {P0: 50}  # the commit's fresher high watermark is the end
    book.committed({P0: 130}, {P0: UNKNOWN})
    assert book.lags() == {P0: 0}


def test_a_commit_before_the_first_statistics_is_reported() -> None:
    book = LagBook()
    book.committed({P0: 10}, {P0: 25})
    assert book.lags() == {P0: 15}
    book.committed({P1: 10}, {})
    assert book.lags() == {P0: 15}  # no end known for P1 yet


def test_an_open_transaction_keeps_the_last_stable_offset_as_the_end() -> None:
    book = LagBook()
    book.read_stats({P0: PartitionOffsets(100, 140, 60)})  # records 100..139 are not readable yet
    book.committed({P0: 90}, {P0: 150})
    assert book.lags() == {P0: 10}
    book.read_stats({P0: PartitionOffsets(150, 150, 90)})  # committed: the high watermark is the end again
    book.committed({P0: 100}, {P0: 160})
    assert book.lags() == {P0: 60}


def test_statistics_never_take_the_committed_offset_back() -> None:
    # exactly_once: librdkafka's committed offset is the one it fetched at assignment, transactions never move it
    book = LagBook()
    book.read_stats({P0: PartitionOffsets(100, 100, 10)})
    book.committed({P0: 70}, {P0: 100})
    book.read_stats({P0: PartitionOffsets(100, 100, 10)})
    assert book.lags() == {P0: 30}


def test_statistics_replace_the_partitions_and_keep_a_known_end() -> None:
    book = LagBook()
    book.committed({P0: 10, P1: 20}, {P0: 30, P1: 40})
    book.read_stats({P1: PartitionOffsets(UNKNOWN, UNKNOWN, 20)})  # P0 moved away; P1 not fetched since
    assert book.lags() == {P1: 20}


def test_lag_is_never_negative_and_clear_forgets_everything() -> None:
    book = LagBook()
    book.read_stats({P0: PartitionOffsets(100, 100, 60)})
    book.committed({P0: 105}, {P0: UNKNOWN})  # consumed past the end the statistics last saw
    assert book.lags() == {P0: 0}
    book.clear()
    assert book.lags() == {}
