"""``crm-scorer check``'s checks, each against fakes: a broker that answers or not, ACLs described or refused,
topics present, missing or unevenly partitioned, a registry that answers or not."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError

from consumer import exit_codes
from consumer.commands import cli
from consumer.commands.acls_cmd import Acl, scorer_acls
from consumer.preflight.checks import Check, artifacts_check, reasons_check, registry_check, settings_check
from consumer.preflight.kafka_checks import acls_check, covers, topics_check
from consumer.preflight.plan import scorer_plan
from consumer.preflight.run import checks, report
from consumer.settings import Settings, load_settings
from models.artifacts import load_models
from schemas.errors import ArtifactError, ConfigError


class FakeBrokers:
    def __init__(
        self, counts: dict[str, int], granted: list[Acl], down: str | None = None, refuse: str | None = None
    ) -> None:
        self.counts, self._granted, self.down, self.refuse = counts, granted, down, refuse

    def reach(self) -> None:
        if self.down:
            raise ConfigError(self.down)

    def partitions(self, topics: Iterable[str]) -> dict[str, int | None]:
        return {t: self.counts.get(t) for t in topics}

    def granted(self, principal: str) -> list[Acl]:
        if self.refuse:
            raise RuntimeError(self.refuse)
        return [a for a in self._granted if a.principal == principal]


class FakeRegistry:
    def __init__(self, conf: dict[str, Any], levels: dict[str | None, str] | None = None) -> None:
        self.levels = {None: "BACKWARD"} if levels is None else levels

    def get_compatibility(self, subject: str | None = None) -> str:
        if subject not in self.levels:
            raise SchemaRegistryError(404, 40401, "Subject not found")
        return self.levels[subject]


@pytest.fixture
def settings() -> Settings:
    return load_settings(None, topics={"input": "in", "output": "out", "dlq": "dlq"})


def test_a_check_prints_ok_or_fail_with_its_problem_on_one_line() -> None:
    assert Check("broker", detail="a:1 answered").line() == "ok    broker: a:1 answered"
    assert Check("topics", "missing: x", code=6).line() == "FAIL  topics: missing: x"


def test_invalid_settings_fail_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "scorer.yaml"
    bad.write_text("workers: many\n")
    check, settings = settings_check(lambda: load_settings(bad))
    assert settings is None and not check.ok and check.code == exit_codes.BAD_INPUT
    assert "workers" in check.line() and "\n" not in check.line()


def test_the_shipped_artifacts_verify_and_every_reason_has_a_code(settings: Settings) -> None:
    check, loaded = artifacts_check(settings.models, load_models)
    assert check.ok, check.line()
    reasons = reasons_check(settings.models, loaded)
    assert reasons.ok, reasons.line()


def test_a_tampered_artifact_fails_with_exit_2(settings: Settings) -> None:
    def tampered(models: Any) -> Any:
        raise ArtifactError("model 'bank_a': bank_a.json sha256 differs from the manifest")

    check, loaded = artifacts_check(settings.models, tampered)
    assert loaded is None and check.code == exit_codes.BAD_INPUT and "sha256" in check.line()


def test_a_reason_without_a_code_is_named(settings: Settings) -> None:
    _, loaded = artifacts_check(settings.models, load_models)
    table = {k: v for k, v in settings.models.reason_codes.items() if k != "age_years"}
    check = reasons_check(settings.models.model_copy(update={"reason_codes": table}), loaded)
    assert not check.ok and "'age_years'" in check.line()


def test_an_unreachable_broker_fails_with_exit_5_and_skips_what_needs_it(settings: Settings) -> None:
    brokers = FakeBrokers({}, [], down="no Kafka broker answered at b:9 within 1 s")
    plan = replace(scorer_plan(settings), models=None)
    results = list(checks(plan, brokers, load_models, FakeRegistry))
    assert [c.name for c in results] == ["broker", "acls", "topics", "schema registry"]
    assert results[0].code == exit_codes.KAFKA_UNREACHABLE
    assert results[1].skipped and results[2].skipped
    lines: list[str] = []
    assert report(results, lines.append) == exit_codes.KAFKA_UNREACHABLE
    assert lines[-1] == "check failed: broker (exit 5)"


def test_every_printed_acl_granted_passes_and_one_missing_is_named(settings: Settings) -> None:
    needed = scorer_acls(settings)
    assert needed
    assert acls_check(FakeBrokers({}, needed), needed).ok
    without_group = [a for a in needed if a.resource_type != "GROUP"]
    check = acls_check(FakeBrokers({}, without_group), needed)
    assert check.code == exit_codes.ACLS
    assert f"User:crm-scorer lacks READ on GROUP {settings.consumer.group_id}" in check.line()


def test_acls_that_cannot_be_described_fail_naming_the_principal(settings: Settings) -> None:
    check = acls_check(FakeBrokers({}, [], refuse="Cluster authorization failed"), scorer_acls(settings))
    assert check.code == exit_codes.ACLS and "User:crm-scorer" in check.line() and "--acl-connection" in check.line()


def test_wider_grants_cover_what_is_needed() -> None:
    needed = Acl("User:s", "TOPIC", "crm.scores", "LITERAL", "DESCRIBE")
    assert covers(Acl("User:s", "TOPIC", "crm.", "PREFIXED", "READ"), needed)  # Read implies Describe
    assert covers(Acl("User:*", "TOPIC", "*", "LITERAL", "ALL"), needed)
    assert not covers(Acl("User:s", "TOPIC", "crm.scores", "LITERAL", "DESCRIBE", permission="DENY"), needed)
    assert not covers(Acl("User:other", "TOPIC", "crm.scores", "LITERAL", "DESCRIBE"), needed)
    assert not covers(Acl("User:s", "GROUP", "crm.scores", "LITERAL", "DESCRIBE"), needed)


def test_a_missing_topic_and_a_partition_mismatch_fail_with_exit_6() -> None:
    missing = topics_check(FakeBrokers({"in": 3}, []), ["in", "out"], [])
    assert missing.code == exit_codes.TOPICS and "missing: out" in missing.line()
    uneven = topics_check(
        FakeBrokers({"out": 3, "crm.outcomes": 1}, []), ["out", "crm.outcomes"], [("out", "crm.outcomes")]
    )
    assert uneven.code == exit_codes.TOPICS
    assert "out has 3 partitions but crm.outcomes has 1" in uneven.line()
    assert topics_check(FakeBrokers({"out": 3, "o": 3}, []), ["out", "o"], [("out", "o")]).ok


def test_the_registry_names_the_subjects_compatibility_or_why_it_did_not_answer() -> None:
    conf = {"url": "http://registry:8081"}
    subject = registry_check(conf, "out-value", lambda c: FakeRegistry(c, {"out-value": "FULL"}))
    assert subject.ok and "out-value compatibility FULL" in subject.line()
    fallback = registry_check(conf, "out-value", FakeRegistry)
    assert "BACKWARD (global)" in fallback.line()

    def unreachable(c: dict[str, Any]) -> Any:
        raise ConnectionError("Connection refused")

    down = registry_check(conf, "out-value", lambda c: type("R", (), {"get_compatibility": unreachable})())
    assert down.code == exit_codes.REGISTRY_UNAVAILABLE and "http://registry:8081" in down.line()
    assert registry_check({}, None, FakeRegistry).ok


def test_the_first_failure_decides_the_exit_code(settings: Settings) -> None:
    plan = replace(scorer_plan(settings, outcomes="crm.outcomes"), models=None)
    counts = {"in": 3, "out": 3, "dlq": 3, "crm.outcomes": 1}
    results = list(checks(plan, FakeBrokers(counts, list(plan.acls)), load_models, FakeRegistry))
    assert [c.ok for c in results] == [True, True, False, True]
    assert report(results, lambda line: None) == exit_codes.TOPICS


def test_check_prints_the_config_masked_and_exits_5_without_a_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "scorer.yaml"
    config.write_text(
        "kafka:\n  bootstrap_servers: 127.0.0.1:1\n  sasl_mechanism: PLAIN\n  sasl_username: u\n"
        "  sasl_password: hunter2-secret\n  security_protocol: SASL_PLAINTEXT\n"
    )
    assert cli.main(["check", "--config", str(config), "--timeout", "1", "--print-config"]) == 5
    out = capsys.readouterr().out
    assert "hunter2-secret" not in out and "sasl_password: '**********'" in out
    assert "FAIL  broker: " in out and out.rstrip().endswith("check failed: broker (exit 5)")
