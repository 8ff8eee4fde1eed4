"""Settings.librdkafka: every property of a worker's consumer and producer in one place, extras per client, and
the config file found the same way wherever the scorer is started."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.settings import load_settings
from models import config_file
from models.train_cli import models_config
from schemas.errors import ConfigError


def test_the_consumer_carries_the_guarantee_and_the_commit_interval() -> None:
    conf = load_settings(None, consumer={"group_id": "g", "batch_size": 50}).librdkafka("consumer")
    assert conf["group.id"] == "g"
    assert (conf["enable.auto.commit"], conf["enable.auto.offset.store"]) == (True, False)
    assert conf["isolation.level"] == "read_committed"
    assert conf["auto.commit.interval.ms"] == 200
    assert conf["queued.min.messages"] == 500


def test_exactly_once_names_a_transactional_id_per_worker_and_commits_only_in_transactions() -> None:
    settings = load_settings(None, guarantee="exactly_once", consumer={"instance_id": "host-a"})
    assert settings.librdkafka("consumer")["enable.auto.commit"] is False
    producer = settings.librdkafka("producer", worker=3)
    assert producer["transactional.id"] == "crm-scorer-crm.applications-host-a-3"
    assert producer["transaction.timeout.ms"] == producer["delivery.timeout.ms"] + 10_000
    assert "transactional.id" not in load_settings(None).librdkafka("producer")


def test_extras_go_to_their_client_and_win_over_the_defaults() -> None:
    kafka = {
        "extra": {"reconnect.backoff.max.ms": 2000, "auto.commit.interval.ms": 1000},
        "consumer_extra": {"fetch.min.bytes": 10, "reconnect.backoff.max.ms": 3000},
        "producer_extra": {"batch.size": 65536},
    }
    settings = load_settings(None, kafka=kafka)
    consumer, producer = settings.librdkafka("consumer"), settings.librdkafka("producer")
    assert (consumer["auto.commit.interval.ms"], consumer["fetch.min.bytes"]) == (1000, 10)
    assert consumer["reconnect.backoff.max.ms"] == 3000, "consumer_extra over extra"
    assert producer["reconnect.backoff.max.ms"] == 2000 and producer["batch.size"] == 65536
    assert "batch.size" not in consumer and "fetch.min.bytes" not in producer


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"extra": {"group.id": "other"}}, r"kafka\.extra sets group\.id=other but consumer\.group_id is crm-scorer"),
        (
            {"consumer_extra": {"enable.auto.offset.store": True}},
            r"^invalid settings .*\n  kafka\.consumer_extra sets enable\.auto\.offset\.store=true, but "
            r"guarantee=at_least_once rests on enable\.auto\.offset\.store=false: remove it$",
        ),
        ({"producer_extra": {"acks": 1}}, r"kafka\.producer_extra sets acks=1"),
        ({"producer_extra": {"linger.ms": 50}}, r"choose it with producer\.linger_ms only"),
        ({"extra": {"transactional.id": "mine"}}, r"the scorer names one per worker"),
    ],
)
def test_an_extra_that_contradicts_a_setting_or_the_guarantee_is_named(kafka: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, kafka=kafka)


def test_an_extra_that_agrees_is_accepted() -> None:
    conf = load_settings(None, kafka={"extra": {"isolation.level": "read_committed"}}).librdkafka("consumer")
    assert conf["isolation.level"] == "read_committed"


def test_a_contradicting_password_is_masked_in_the_error(tmp_path: Path) -> None:
    kafka = {"sasl_mechanism": "PLAIN", "sasl_password": "right", "extra": {"sasl.password": "wrong-secret"}}
    with pytest.raises(ConfigError) as caught:
        load_settings(None, kafka=kafka)
    assert "wrong-secret" not in str(caught.value) and "right" not in str(caught.value).replace("***", "")


def test_the_default_file_is_the_projects_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "scorer.yaml").write_text("consumer:\n  group_id: from-the-cwd\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None)
    assert settings.source == config_file.DEFAULT_CONFIG_FILE and settings.consumer.group_id == "crm-scorer"


def test_without_a_default_file_the_defaults_apply_and_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_file, "DEFAULT_CONFIG_FILE", tmp_path / "absent.yaml")
    assert load_settings(None).source is None


def test_file_then_environment_then_flags_merge_section_by_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "scorer.yaml"
    path.write_text("consumer:\n  group_id: file\n  batch_size: 7\nkafka:\n  extra: {a.b: 1}\n")
    monkeypatch.setenv("CRM_SCORER_CONSUMER__BATCH_SIZE", "8")
    settings = load_settings(path, kafka={"client_id": "flag"})
    assert (settings.consumer.group_id, settings.consumer.batch_size) == ("file", 8)
    assert (settings.kafka.client_id, settings.kafka.extra) == ("flag", {"a.b": 1})
    assert settings.source == path


@pytest.mark.parametrize(("text", "message"), [("- a\n- b\n", "not a mapping"), ("a: [\n", "not valid YAML")])
def test_a_config_file_that_is_no_mapping_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "scorer.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path)


def test_training_reads_the_models_section_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "scorer.yaml"
    path.write_text("models:\n  banks:\n    - name: bank_z\n")
    assert [b.name for b in models_config(path, None).banks] == ["bank_z"]
    with pytest.raises(ConfigError, match="does not exist"):
        models_config(tmp_path / "missing.yaml", None)
    path.write_text("models:\n  banks:\n    - name: Bank Z\n")
    with pytest.raises(ConfigError, match=rf"{path}: models\.banks\.0\.name"):
        models_config(path, None)
