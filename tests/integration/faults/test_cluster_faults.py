"""Broker faults on a three-broker Apache Kafka cluster: scenarios 9a, 9b and 9c of the fault suite.

Every topic has three replicas and ``min.insync.replicas`` 2, and every write is ``acks=all``, so losing or
freezing any one broker may delay events but never lose one (``cluster``'s docstring says how). Each scenario runs
one worker under a steady stream, makes its fault, lets the stream run on after the cluster is whole again, then
checks conservation in both guarantees. They use ``kafka_cluster``, so they are marked ``cluster``:
``make test-faults`` runs them, ``make test`` does not; ``test_chaos`` repeats the three faults many times.

Duplicates: none in exactly_once (read back ``read_committed``). In at_least_once a re-delivery (after the group
coordinator moved and the member lost its partitions) starts again from a committed offset, so only events between
the offsets committed just before the fault and the input's end just after it may be scored twice: every
duplicate is checked to lie in that window, and each at most once per re-assignment.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from producer_tools.servers.apache_kafka import ApacheKafka
from tests.integration.faults.cluster import frozen_broker, leader_kill, rolling_restart, scored_through
from tests.integration.harness import Lanes

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]
DOWN_S = 20.0  # a killed broker stays down this long: well past the controller fencing it (9 s) and failover
PAUSE_S = 30.0


def test_kill_9_of_the_leading_broker_then_restart_loses_nothing(
    kafka_cluster: ApacheKafka, cluster_lanes: Lanes, tmp_path: Path, guarantee: str
) -> None:
    fault = leader_kill(kafka_cluster, cluster_lanes, guarantee, DOWN_S)
    run = scored_through(cluster_lanes, tmp_path, guarantee, 901, fault)
    run.check("9a. cluster: kill -9 of the leader broker, restart")


def test_rolling_restart_of_all_three_brokers_under_load_loses_nothing(
    kafka_cluster: ApacheKafka, cluster_lanes: Lanes, tmp_path: Path, guarantee: str
) -> None:
    run = scored_through(cluster_lanes, tmp_path, guarantee, 902, rolling_restart(kafka_cluster))
    run.check("9b. cluster: rolling restart of 3 brokers")


def test_broker_paused_for_30_s_under_load_loses_nothing(
    kafka_cluster: ApacheKafka, cluster_lanes: Lanes, tmp_path: Path, guarantee: str
) -> None:
    run = scored_through(cluster_lanes, tmp_path, guarantee, 903, frozen_broker(kafka_cluster, cluster_lanes, PAUSE_S))
    run.check("9c. cluster: one broker paused 30 s")
