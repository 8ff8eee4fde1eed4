"""Every installed console script and subcommand answers ``--help``: the module paths in ``pyproject.toml``'s
entry points and in the CLIs' command tables point at modules that exist and register their parsers."""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import entry_points

import pytest

SCRIPTS = ("crm-scorer", "crm-producer", "crm-train")
# Commands that take subcommands; crm-train takes only options.
WITH_SUBCOMMANDS = ("crm-scorer", "crm-producer")


def script(name: str) -> Callable[[list[str]], int]:
    found = [entry for entry in entry_points(group="console_scripts") if entry.name == name]
    assert found, f"console script {name} is not installed: pip install -e '.[dev]'"
    main: Callable[[list[str]], int] = found[0].load()
    return main


def help_text(name: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``name argv --help`` prints; asserts it exits 0."""
    with pytest.raises(SystemExit) as exited:
        script(name)([*argv, "--help"])
    assert exited.value.code == 0, f"{name} {' '.join(argv)} --help exited {exited.value.code}"
    return capsys.readouterr().out


def subcommands(name: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The subcommands that ``name --help`` lists in its usage (``{run,score,...}``)."""
    choices = re.search(r"\{([\w,-]+)\}", help_text(name, [], capsys))
    return choices.group(1).split(",") if choices else []


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_console_script_prints_its_usage(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert help_text(name, [], capsys).startswith(f"usage: {name}")


@pytest.mark.parametrize("name", WITH_SUBCOMMANDS)
def test_every_subcommand_prints_its_usage(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    commands = subcommands(name, capsys)
    assert commands, f"{name} --help lists no subcommand"
    for command in commands:
        assert help_text(name, [command], capsys).startswith(f"usage: {name} {command}"), command


def test_the_tools_contribute_bench_to_the_scorer(capsys: pytest.CaptureFixture[str]) -> None:
    # crm-scorer skips a plugin that fails to import, so a stale module path would only make bench vanish.
    plugins = {entry.name: entry for entry in entry_points(group="crm_scorer.commands")}
    assert "bench" in plugins
    assert callable(plugins["bench"].load())
    assert "bench" in subcommands("crm-scorer", capsys)
