"""The schema-to-model contract at run time, on Apache Kafka with the Apicurio registry (Confluent framing).

A producer registers a v3 of the application event that renames ``applicant.monthprofit`` and writes with it.
The scorer has never shipped that schema, so it can only learn it by registry id (single-object framing would
dead-letter it as an unknown fingerprint). On the first v3 message the scorer checks v3 against its models once:
the violations gauge rises for every bank and a real Prometheus fires ``SchemaContractBroken``, while every
event is still scored (the renamed field read as missing, as before) and the corrupt one dead-lettered.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from producer_tools.publishing.topics import read_all
from producer_tools.servers.apicurio import ApicurioRegistry
from producer_tools.servers.broker import free_port
from producer_tools.world import generate
from schemas import ConfluentEncoder, ResultDecoder, load_catalog
from schemas.catalog import SchemaVersion
from schemas.dead_letter import DeadLetterInfo
from schemas.registry import RegistrySchemaSource, value_subject
from tests.integration.faults.support import wait_until
from tests.integration.harness import Lanes, ScorerProcess, dead_letters, produce
from tests.integration.test_observability import Prometheus, prometheus_bin, start_prometheus

__all__ = ["prometheus_bin", "start_prometheus"]  # the fixtures this module uses

RENAMED = Path(__file__).parents[1] / "unit" / "schema_contract" / "application_event.v3_renamed_income.avsc"
BANKS = [f"bank_{c}" for c in "abcde"]
GAUGE = "crm_scorer_schema_contract_violations"


def metric_values(port: int, name: str) -> dict[tuple[str, str], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.labels["model"], s.labels["problem"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_a_writer_schema_that_renames_a_bank_field_raises_the_alert_while_every_event_is_scored(
    kafka_bootstrap: str,
    make_topic: Callable[..., str],
    unique_group: Callable[[], str],
    apicurio: ApicurioRegistry,
    start_prometheus: Callable[[int], Prometheus],
    tmp_path: Path,
) -> None:
    lanes = Lanes(kafka_bootstrap, make_topic(2, "in"), make_topic(2, "out"), make_topic(1, "dlq"), unique_group())
    v2, v3 = load_catalog().application_event_latest, SchemaVersion.parse(RENAMED.read_text("utf-8"), "v3")
    source = RegistrySchemaSource.from_url(apicurio.url)
    v2_id, v3_id = (source.register_schema(value_subject(lanes.input), s.schema_str) for s in (v2, v3))
    source.close()
    events = generate(60, seed=2112).events
    values = []
    for i, event in enumerate(events):
        if i % 3:  # two in three written with v3, where monthprofit is called monthly_income
            applicant = dict(event["applicant"])
            applicant["monthly_income"] = applicant.pop("monthprofit")
            values.append(
                (event["application_id"].encode(), ConfluentEncoder(v3_id, v3)({**event, "applicant": applicant}))
            )
        else:
            values.append((event["application_id"].encode(), ConfluentEncoder(v2_id, v2)(event)))
    values.append((b"corrupt", ConfluentEncoder(v3_id, v3).header))  # a v3 header and no body
    produce(kafka_bootstrap, lanes.input, values)

    port = free_port()
    extra = ("--schema-registry-url", apicurio.url, "--metrics-port", str(port))
    with ScorerProcess(lanes, tmp_path, *extra, env={"CRM_SCORER_METRICS__HOST": "127.0.0.1"}) as scorer:
        scorer.wait_for(lanes.output, len(events), timeout=90)
        scorer.wait_for(lanes.dlq, 1)
        violations = metric_values(port, GAUGE)
        prometheus = start_prometheus(port)

        def firing() -> set[str]:
            alerts = prometheus.api("alerts")["data"]["alerts"]
            return {a["labels"]["model"] for a in alerts if a["labels"]["alertname"] == "SchemaContractBroken"}

        wait_until(lambda: firing() == set(BANKS), 30, "SchemaContractBroken for every bank", scorer)
        scorer.stop()

    assert violations == {(bank, "missing_field"): 3.0 for bank in BANKS}  # income, payment_to_income, free_income
    assert scorer.log.count("breaks the model contract") == 1, scorer.log[-3000:]
    assert "bank_a.income (missing_field applicant.monthprofit)" in scorer.log
    registry = RegistrySchemaSource.from_url(apicurio.url)
    decode = ResultDecoder(load_catalog(), registry).decode
    scored = sorted(str(decode(m.value)["event_id"]) for m in read_all(kafka_bootstrap, lanes.output, idle=1.0))
    registry.close()
    assert scored == sorted(str(e["event_id"]) for e in events)  # every event scored once, v3 ones included
    (dead,) = dead_letters(kafka_bootstrap, lanes.dlq)
    assert DeadLetterInfo.from_headers(dead.headers).reason == "avro_decode_error"
