"""Every command README.md and the operator's pages of docs/ show, checked the way a new user would meet it.

Commands are the lines of the ``bash`` blocks of README.md and of the docs pages that hold what an operator runs
(``DOCS``: the README's former sections). Each one must match a rule below: ``RUN`` commands are executed in
order in a scratch directory (and must exit 0); the others are skipped for the reason given, and every ``crm-*``
command among them is still parsed by the real argument parser, so a renamed or removed flag fails here. A
command that matches no rule fails the test: the lists are explicit on purpose.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consumer.commands.cli import build_parser as scorer_parser
from models.train_cli import build_parser as train_parser
from producer_tools.commands.cli import build_parser as producer_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = [
    ROOT / "docs" / f"{name}.md"
    for name in (
        "deployment",
        "configuring",
        "results",
        "delivery",
        "scaling",
        "dead-letters",
        "operations",
        "security",
        "troubleshooting",
        "brokers",
        "development",
    )
]
SHELL_BLOCKS = {"bash", "sh", "shell"}
RUN = "run"

Rule = tuple[str, Callable[[list[str]], bool], str]


def _starts(*words: str) -> Callable[[list[str]], bool]:
    return lambda argv: argv[: len(words)] == list(words)


def _is_help(argv: list[str]) -> bool:
    return argv[0].startswith("crm-") and argv[-1] == "--help"


# (name, matches, RUN or the reason it is not run), first match wins.
RULES: list[Rule] = [
    ("help", _is_help, RUN),
    ("generate", _starts("crm-producer", "generate"), RUN),
    ("score a file", _starts("crm-scorer", "score"), RUN),
    ("config reference", _starts("crm-scorer", "config-reference"), RUN),
    ("acls", _starts("crm-scorer", "acls"), RUN),
    ("evaluate models", lambda a: a[0] == "crm-train" and "--evaluate" in a, RUN),
    ("export the contract", _starts("crm-scorer", "schemas", "export"), RUN),
    ("look at a file", _starts("head"), RUN),
    ("activate", _starts("."), "shell state: the test puts the environment's bin directory on PATH"),
    ("export", _starts("export"), "shell state: the test sets KAFKA_BOOTSTRAP_SERVERS for parsing"),
    ("make", _starts("make"), "the make targets are the test suite itself, the demo, lint or long benchmarks"),
    ("docker", _starts("docker"), "needs a Docker engine"),
    ("kafka tools", lambda a: a[0] == "kafka-topics.sh", "needs an Apache Kafka cluster"),
    ("broker", _starts("crm-producer", "broker"), "runs in the foreground until stopped"),
    ("demo", _starts("crm-producer", "demo"), "starts a broker and the scorer: tests/integration/test_demo.py runs it"),
    ("produce", _starts("crm-producer", "produce"), "needs a broker"),
    ("tail", _starts("crm-producer", "tail"), "needs a broker"),
    ("replay", _starts("crm-producer", "replay-dlq"), "needs a broker"),
    ("run", _starts("crm-scorer", "run"), "needs a broker and runs until stopped"),
    ("outcomes", _starts("crm-producer", "outcomes"), "needs a broker and the scores it answers"),
    ("monitor", _starts("crm-scorer", "monitor"), "needs a broker"),
    ("train", lambda a: a[0] == "crm-train", "trains for minutes or needs a labelled file"),
]
PARSERS = {"crm-scorer": scorer_parser, "crm-producer": producer_parser, "crm-train": train_parser}


def readme_commands() -> Iterator[str]:
    """The command lines of the shell blocks of the README and ``DOCS``, continuation lines joined, comments
    dropped."""
    inside, pending = False, ""
    lines = [line for page in (README, *DOCS) for line in page.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            inside = not inside and fence.group(1) in SHELL_BLOCKS
            continue
        if not inside or not line.strip() or line.strip().startswith("#"):
            continue
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        yield pending
        pending = ""


def rule_for(command: str) -> Rule:
    argv = shlex.split(command)
    for rule in RULES:
        if rule[1](argv):
            return rule
    raise AssertionError(f"a README or docs command matches no rule in {__name__}: {command}")


COMMANDS = list(readme_commands())


def test_readme_shows_commands_and_each_has_a_rule() -> None:
    assert "make demo" in COMMANDS and "make test" in COMMANDS
    for command in COMMANDS:
        rule_for(command)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[0] in PARSERS and not c.endswith("--help")])
def test_crm_commands_parse_with_the_real_parsers(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # As after the README's `export KAFKA_BOOTSTRAP_SERVERS=...`: the parsers read it for their default.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    argv = [os.path.expandvars(word) for word in shlex.split(command)]
    PARSERS[argv[0]]().parse_args(argv[1:])


def test_docker_run_arguments_are_crm_scorer_run_flags() -> None:
    runs = [shlex.split(c) for c in COMMANDS if c.startswith("docker run ")]
    assert runs
    for argv in runs:
        image = next(i for i, word in enumerate(argv) if word.startswith("crm-scorer:"))
        scorer_parser().parse_args(["run", *argv[image + 1 :]])  # the image's entrypoint is `crm-scorer run`


def test_make_targets_exist() -> None:
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.MULTILINE))
    make_commands = [shlex.split(command) for command in COMMANDS if command.startswith("make")]
    assert make_commands, "the README shows no make command"
    for argv in make_commands:
        assert argv[1] in targets, f"`{shlex.join(argv)}`: no such target in the Makefile"


def _anchors(markdown: Path) -> set[str]:
    headings = re.findall(r"^#+ (.+)$", markdown.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_readme_links_resolve() -> None:
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text(encoding="utf-8"))
    local = [target for target in links if not target.startswith(("http://", "https://"))]
    assert local, "the README links to none of its own documents or headings"
    for target in local:
        path, _, anchor = target.partition("#")
        document = ROOT / path if path else README
        assert document.exists(), f"README links to {path}, which does not exist"
        if anchor:
            assert anchor in _anchors(document), f"README links to {target}: no such heading"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory that looks like the repository root for reading, and keeps what commands write."""
    work = tmp_path_factory.mktemp("readme")
    for name in ("configs", "models", "docs"):
        (work / name).symlink_to(ROOT / name, target_is_directory=True)
    return work


def test_safe_readme_commands_run_as_written(scratch: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    ran = 0
    for command in COMMANDS:
        if rule_for(command)[2] != RUN:
            continue
        done = subprocess.run(
            shlex.split(command), cwd=scratch, env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{done.stderr[-2000:]}"
        ran += 1
    assert ran >= 8
    assert (scratch / "results.jsonl").read_text(encoding="utf-8").count("\n") == 1000
