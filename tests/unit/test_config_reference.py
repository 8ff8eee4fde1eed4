"""The generated configuration reference: committed as the code writes it, and every row true of the code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from consumer.commands import run_cmd
from consumer.commands.cli import main
from consumer.commands.config_reference import SettingDoc, render_markdown, run_flags, setting_docs
from consumer.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "configuration.md"


@pytest.fixture(scope="module")
def docs() -> list[SettingDoc]:
    return setting_docs()


def test_committed_reference_is_what_the_code_generates(docs: list[SettingDoc]) -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render_markdown(docs), (
        "docs/configuration.md is out of date: run `crm-scorer config-reference --out docs/configuration.md`"
    )


def test_every_setting_is_described(docs: list[SettingDoc]) -> None:
    assert [d.key for d in docs if not d.description] == []


def test_reference_holds_no_machine_path(docs: list[SettingDoc]) -> None:
    text = render_markdown(docs)
    assert str(ROOT) not in text
    assert "`models/artifacts`" in text


def _leaf(model: BaseModel, key: str) -> tuple[BaseModel, str]:
    *sections, name = key.split(".")
    for section in sections:
        model = getattr(model, section)
    field = next(n for n, f in type(model).model_fields.items() if (f.alias or n) == name)
    return model, field


def _as_env(value: Any) -> str | None:
    if value is None or isinstance(value, SecretStr):
        return None
    if isinstance(value, list):
        return json.dumps([v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value])
    if isinstance(value, dict):
        return json.dumps({k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in value.items()})
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def test_every_environment_variable_is_read_by_the_settings_model(
    docs: list[SettingDoc], monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = Settings()
    checked = 0
    for doc in docs:
        if doc.env is None:
            continue
        model, field = _leaf(defaults, doc.key)
        value = _as_env(getattr(model, field))
        if value is None:
            continue
        with monkeypatch.context() as env:
            env.setenv(doc.env, value)
            read, name = _leaf(Settings(), doc.key)
            assert name in read.model_fields_set, f"{doc.env} did not reach {doc.key}"
        checked += 1
    assert checked > 20


def test_flags_cover_every_run_option_but_the_config_file(docs: list[SettingDoc]) -> None:
    parser = argparse.ArgumentParser()
    run_cmd.register(parser.add_subparsers())
    run = next(iter(parser._subparsers._group_actions[0].choices.values()))  # type: ignore[union-attr]
    options = {a.option_strings[-1] for a in run._actions if a.option_strings} - {"--help", "--config"}
    assert set(run_flags().values()) == options
    assert {d.flag for d in docs if d.flag} == options


def test_cli_writes_and_checks_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "configuration.md"
    assert main(["config-reference", "--out", str(out), "--check"]) == 1
    assert main(["config-reference", "--out", str(out)]) == 0
    assert main(["config-reference", "--out", str(out), "--check"]) == 0
    assert out.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8")
    assert main(["config-reference"]) == 0
    assert capsys.readouterr().out.startswith("# Configuration reference")
