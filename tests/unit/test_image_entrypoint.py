"""The scorer image keeps its config when `docker run <image> --workers 2` replaces CMD: the Dockerfile's
ENTRYPOINT and ENV, parsed from the file, run in this process (no Docker engine), and the settings it loaded
checked. Without any config file the scorer says so with a WARNING."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from consumer.commands import cli, run_cmd
from consumer.settings import Settings, load_settings
from tests.unit.test_deployment import ROOT, stage

WORKDIR = "/app"  # the image's WORKDIR: the repository's files are copied under it


def image_env() -> dict[str, str]:
    """Every ENV of the scorer's stages, with the image's /app paths mapped onto this repository."""
    env: dict[str, str] = {}
    for name in ("runtime", "scorer"):
        for instruction, args in stage(name):
            if instruction == "ENV":
                for pair in args.replace("\\\n", " ").split():
                    key, _, value = pair.partition("=")
                    env[key] = value.replace(WORKDIR, str(ROOT), 1) if value.startswith(WORKDIR) else value
    return env


def run_in_process(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """``cli.main(argv)`` with the workers and telemetry replaced by a recorder of the settings they were given."""
    seen: list[Settings] = []

    class Telemetry:
        def __init__(self, settings: Settings) -> None:
            seen.append(settings)

        def __enter__(self) -> Any:
            return None

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(run_cmd, "serve_telemetry", Telemetry)
    monkeypatch.setattr(run_cmd, "run_workers", lambda settings, factory: 0)
    assert cli.main(argv) == 0
    assert len(seen) == 1
    return seen[0]


def test_the_entrypoint_with_workers_2_keeps_the_images_config(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    scorer = dict(stage("scorer"))
    entrypoint = json.loads(scorer["ENTRYPOINT"])
    assert entrypoint[0] == "crm-scorer" and "CMD" not in scorer, "a CMD would be replaced by docker run's arguments"
    env = image_env()
    assert env.get(run_cmd.CONFIG_ENV), f"the image sets no {run_cmd.CONFIG_ENV}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ROOT.parent)  # not the repository: only the image's settings may find the file
    with caplog.at_level(logging.WARNING):
        settings = run_in_process([*entrypoint[1:], "--workers", "2"], monkeypatch)
    shipped = load_settings(ROOT / "configs" / "scorer.yaml")
    assert settings.source == ROOT / "configs" / "scorer.yaml"
    assert settings.workers == 2
    assert [b.name for b in settings.models.banks] == [b.name for b in shipped.models.banks]
    assert settings.topics == shipped.topics
    assert not [r for r in caplog.records if "NO CONFIG FILE" in r.getMessage()]


def test_no_config_file_at_all_is_a_warning_naming_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.delenv(run_cmd.CONFIG_ENV, raising=False)
    monkeypatch.setattr("models.config_file.DEFAULT_CONFIG_FILE", tmp_path / "configs" / "scorer.yaml")
    with caplog.at_level(logging.WARNING):
        settings = run_in_process(["run", "--workers", "1"], monkeypatch)
    assert settings.source is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "NO CONFIG FILE" in r.getMessage()]
    assert len(warnings) == 1
    assert "--config" in warnings[0].getMessage() and run_cmd.CONFIG_ENV in warnings[0].getMessage()
