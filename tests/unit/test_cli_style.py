"""One CLI style: --version on every CLI, every option of every subcommand with a help text in plain text, and
the defaults shown."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

import pytest

from consumer.commands.cli import build_parser as scorer_parser
from models.train_cli import build_parser as train_parser
from producer_tools.commands.cli import build_parser as producer_parser

BUILDERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "crm-scorer": scorer_parser,
    "crm-producer": producer_parser,
    "crm-train": train_parser,
}


def parsers(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every subcommand's parser under it, by their command line."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from parsers(sub, f"{path} {name}")


def options() -> list[tuple[str, argparse.Action]]:
    return [
        (path, action)
        for program, build in BUILDERS.items()
        for path, parser in parsers(build(), program)
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction)
    ]


def test_every_option_of_every_subcommand_has_a_plain_text_help() -> None:
    every = options()
    assert len(every) > 100, "the walk found the subcommands' options"
    missing = [f"{path} {action.option_strings[0]}" for path, action in every if not (action.help or "").strip()]
    assert not missing, f"options without a help text: {missing}"
    markup = [
        f"{path} {a.option_strings[0]}" for path, a in every if "``" in (a.help or "") or ":ref:" in (a.help or "")
    ]
    assert not markup, f"RST markup in help texts: {markup}"


LONG_RUNNING = [
    "crm-scorer run",
    "crm-scorer monitor",
    "crm-scorer gateway",
    "crm-producer produce",
    "crm-producer outcomes",
]


def test_every_long_running_command_takes_log_level_and_log_json() -> None:
    found = {
        path: {o for a in parser._actions for o in a.option_strings}
        for program, build in BUILDERS.items()
        for path, parser in parsers(build(), program)
    }
    assert LONG_RUNNING and set(LONG_RUNNING) <= set(found)
    for command in LONG_RUNNING:
        assert {"--log-level", "--log-json"} <= found[command], command


@pytest.mark.parametrize("program", sorted(BUILDERS))
def test_every_cli_prints_its_version(program: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        BUILDERS[program]().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"{program} 0.")


def test_a_subcommands_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        producer_parser().parse_args(["tail", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one JSON per line or a table (default: json)" in text
    assert "(default: None)" not in text


def test_every_help_page_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    pages = 0
    for program, build in BUILDERS.items():
        for path, parser in parsers(build(), program):
            text = parser.format_help()
            assert "``" not in text and "%%" not in text and ":ref:" not in text, path
            pages += 1
    assert pages > 20


@pytest.mark.parametrize(
    ("argv", "dest"),
    [
        (["tail", "--timeout", "3"], "timeout"),
        (["outcomes", "--idle-exit", "3"], "idle_exit"),
    ],
)
def test_the_idle_timeout_has_one_name_and_the_old_spellings_still_work(
    argv: list[str], dest: str, capsys: pytest.CaptureFixture[str]
) -> None:
    new = producer_parser().parse_args([argv[0], "--idle-timeout", "3"])
    assert getattr(new, dest) == 3.0 and capsys.readouterr().err == ""
    old = producer_parser().parse_args(argv)
    assert getattr(old, dest) == 3.0
    assert f"{argv[1]} is deprecated, use --idle-timeout" in capsys.readouterr().err


def test_the_monitors_until_idle_is_the_idle_timeout_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert scorer_parser().parse_args(["monitor", "--idle-timeout", "2"]).until_idle == 2.0
    assert scorer_parser().parse_args(["monitor", "--until-idle", "2"]).until_idle == 2.0
    assert "--until-idle is deprecated" in capsys.readouterr().err
