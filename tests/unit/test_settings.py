"""Settings: YAML, environment and flags in that order of precedence; errors name the key; secrets stay secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.settings import load_settings
from schemas.errors import ConfigError

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "scorer.yaml"  # unit tests run in an empty directory


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scorer.yaml"
    path.write_text(text)
    return path


def test_the_shipped_config_is_valid() -> None:
    settings = load_settings(SHIPPED)
    assert [b.name for b in settings.models.banks] == ["bank_a", "bank_b", "bank_c", "bank_d", "bank_e"]
    assert settings.topics.dlq == "crm.applications.dlq"


def test_environment_overrides_yaml_and_flags_override_environment(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, "consumer:\n  group_id: from-yaml\n  batch_size: 10\n")
    monkeypatch.setenv("CRM_SCORER_CONSUMER__GROUP_ID", "from-env")
    settings = load_settings(path)
    assert (settings.consumer.group_id, settings.consumer.batch_size) == ("from-env", 10)
    settings = load_settings(path, consumer={"group_id": "from-flag", "batch_size": None})
    assert (settings.consumer.group_id, settings.consumer.batch_size) == ("from-flag", 10)


def test_an_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"consumer\.batch_sise: Extra inputs are not permitted"):
        load_settings(write(tmp_path, "consumer:\n  batch_sise: 10\n"))


def test_a_bad_value_names_the_key_and_its_environment_variable(monkeypatch) -> None:
    monkeypatch.setenv("CRM_SCORER_CONSUMER__BATCH_SIZE", "0")
    with pytest.raises(ConfigError, match=r"consumer\.batch_size: .*\(env CRM_SCORER_CONSUMER__BATCH_SIZE\)"):
        load_settings(None)


def test_a_feature_the_pipeline_does_not_produce_is_named(tmp_path: Path) -> None:
    text = "models:\n  banks:\n    - name: bank_a\n      features: [age_years, shoe_size]\n"
    with pytest.raises(ConfigError, match=r"models\.banks\.0\.features: .*shoe_size"):
        load_settings(write(tmp_path, text))


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_secrets_reach_librdkafka_but_not_dumps_or_reprs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CRM_SCORER_KAFKA__SASL_PASSWORD", "hunter2-secret")
    settings = load_settings(None, kafka={"sasl_mechanism": "PLAIN", "sasl_username": "scorer"})
    assert settings.librdkafka("consumer")["sasl.password"] == "hunter2-secret"
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in str(settings.safe_dump())


def test_a_password_file_is_read_only_when_connecting(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    settings = load_settings(None, kafka={"sasl_mechanism": "PLAIN", "sasl_password_file": str(secret)})
    assert settings.librdkafka("consumer")["sasl.password"] == "from-a-file"


def test_config_hash_depends_on_models_not_on_where_artifacts_live(tmp_path: Path) -> None:
    base = load_settings(None)
    moved = load_settings(None, models={"artifacts_dir": str(tmp_path)})
    stored = load_settings(None, models={"store_dir": str(tmp_path), "control_topic": "ops.models", "channel": "eu"})
    fewer = load_settings(None, models={"banks": [{"name": "bank_a"}]})
    assert base.config_hash() == moved.config_hash() == stored.config_hash() != fewer.config_hash()
