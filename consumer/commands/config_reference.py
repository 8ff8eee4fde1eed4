"""The configuration reference, generated from the settings model so that it cannot drift from it.

``crm-scorer config-reference`` renders every setting of ``consumer.settings.Settings``: its dotted key (as
scorer.yaml spells it), its environment variable, the ``crm-scorer run`` flag that sets it (if any), its type,
default and description. ``--out docs/configuration.md`` writes the committed reference; ``--check`` fails
when the committed file differs from what the code would write.

``crm-scorer config`` prints the settings as the scorer (``--monitor``: the monitor) reads them from its file,
the environment and the defaults, as YAML, every secret masked.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from consumer.settings import ENV_PREFIX, Settings, load_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path("docs/configuration.md")
_LIST_ITEM = "[]"
_LONG_LIST = 4
_LIMITS = (
    (annotated_types.Ge, "ge", ">="),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "<="),
    (annotated_types.Lt, "lt", "<"),
)


@dataclass(frozen=True)
class SettingDoc:
    """One row of the reference."""

    key: str  # dotted, as scorer.yaml spells it; ``[]`` marks the fields of a list's entries
    env: str | None  # None: settable only inside its list (YAML, or the whole list as JSON)
    flag: str | None
    type: str
    default: str
    description: str

    @property
    def section(self) -> str:
        head, dot, _ = self.key.partition(".")
        return head if dot else ""


def setting_docs(model: type[BaseModel] = Settings, flags: dict[str, str] | None = None) -> list[SettingDoc]:
    """Every leaf setting of ``model`` (and each list entry's fields), in the model's field order."""
    flags = run_flags() if flags is None else flags
    return list(_walk(model, (), env_ok=True, flags=flags))


def _walk(model: type[BaseModel], path: tuple[str, ...], env_ok: bool, flags: dict[str, str]) -> Iterator[SettingDoc]:
    for name, field in model.model_fields.items():
        key = field.alias or name
        parts = (*path, key)
        annotation = field.annotation
        section = _section_model(annotation)
        if section is not None:
            yield from _walk(section, parts, env_ok, flags)
            continue
        dotted = ".".join(parts)
        env = ENV_PREFIX + "__".join(parts).upper() if env_ok else None
        kind, default = _type_name(annotation, field), _default(field)
        yield SettingDoc(dotted, env, flags.get(dotted), kind, default, _description(field))
        item = _list_item_model(annotation)
        if item is not None:
            yield from _walk(item, (*parts[:-1], key + _LIST_ITEM), False, flags)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        return _section_model(item)
    return None


def _description(field: FieldInfo) -> str:
    return field.description or ""  # the model is the one place a setting is described (a test wants none empty)


def _type_name(annotation: Any, field: FieldInfo | None = None) -> str:
    args = [a for a in get_args(annotation) if a is not type(None)]
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) < len(get_args(annotation)):
        inner = args[0] if len(args) == 1 else typing.Union[tuple(args)]  # noqa: UP007 - built at runtime
        return _type_name(inner, field) + " (optional)"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in get_args(annotation))
    if origin is list:
        item = args[0]
        return "list of " + ("entries" if _section_model(item) else _type_name(item))
    if origin is dict:
        return f"map of {_type_name(args[0])} to {_type_name(args[1])}"
    if annotation is SecretStr:
        return "secret"
    name = getattr(annotation, "__name__", str(annotation))
    return name.lower() + _bounds(field)


def _bounds(field: FieldInfo | None) -> str:
    if field is None:
        return ""
    limits = []
    for meta in field.metadata:
        for kind, attribute, symbol in _LIMITS:
            if isinstance(meta, kind):
                limits.append(f"{symbol} {getattr(meta, attribute)}")
    return f", {', '.join(limits)}" if limits else ""


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "required"
    value = field.get_default(call_default_factory=True)
    return _show(value)


def _show(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`{_relative(value)}`"
    if isinstance(value, list):
        items = [_brief(v) for v in value]
        if len(items) > _LONG_LIST:
            return ", ".join(f"`{v}`" for v in items[:3]) + f", ... ({len(items)} items)"
        return ", ".join(f"`{v}`" for v in items) or "empty"
    if isinstance(value, dict):
        return f"`{json.dumps(value)}`" if value else "empty"
    return f"`{value}`"


def _brief(value: Any) -> str:
    """A list entry in a few characters: a model by its name (or first field), anything else as text."""
    if isinstance(value, BaseModel):
        return str(getattr(value, "name", next(iter(value.model_dump().values()), "")))
    return str(value)


def _relative(path: Path) -> str:
    # Defaults inside the installed package would otherwise print this machine's absolute path.
    try:
        return path.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def run_flags() -> dict[str, str]:
    """Dotted setting key -> the ``crm-scorer run`` flag that overrides it, read from the parser itself.

    Each flag is given a unique marker value and ``run_cmd.overrides`` says where in the settings it lands.
    """
    from consumer.commands import run_cmd  # the run command pulls in the service; only this function needs it

    parser = argparse.ArgumentParser()
    run_cmd.register(parser.add_subparsers())
    run_parser = next(
        choice
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for choice in action.choices.values()
    )
    flag_of = {a.dest: a.option_strings[-1] for a in run_parser._actions if a.option_strings and a.dest != "help"}
    namespace = argparse.Namespace(**{dest: f"<{dest}>" for dest in flag_of})
    found: dict[str, str] = {}
    for dotted, value in _leaves(run_cmd.overrides(namespace)):
        dest = value[1:-1] if isinstance(value, str) and value.startswith("<") else None
        if dest in flag_of:
            found[dotted] = flag_of[dest]
    return found


def _leaves(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def render_markdown(docs: list[SettingDoc]) -> str:
    """The reference as a Markdown document, one table per top-level section."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from consumer/settings.py by `crm-scorer config-reference --out docs/configuration.md`.",
        "     Do not edit by hand: a unit test fails when this file differs from what the code generates. -->",
        "",
        "`crm-scorer run` reads its settings from, highest precedence first:",
        "",
        "1. its command-line flags (the **flag** column),",
        f"2. environment variables `{ENV_PREFIX}<SECTION>__<KEY>` (the **environment** column),",
        "3. the YAML file given with `--config` (keys as in the **key** column; a file named must exist; unnamed,",
        "   the project's `configs/scorer.yaml` beside the code, whatever the working directory),",
        "4. the defaults below.",
        "",
        "Unknown keys are errors that name the key. Values of lists and maps are JSON in the environment",
        f'(`{ENV_PREFIX}MODELS__BANKS=\'[{{"name": "bank_a"}}]\'`). Secrets are never logged or hashed;',
        "prefer `kafka.sasl_password_file` (a mounted secret) to a password in the environment.",
        "Keys marked `[]` are fields of each entry of a list: set them in the YAML file.",
        "",
        "The `kafka` and `schema_registry` sections are the connection every command shares",
        "(`consumer/connection.py`): `crm-scorer monitor --connection FILE` and every `crm-producer` command",
        "that talks to Kafka (`--config FILE`) read these two sections of a file with the same models, so",
        "`configs/scorer.yaml` connects them all; a command's own keys (`kafka.client_id`, the extras per",
        "client, the monitor's group) stay with that command. Their environment variables are",
        "`CRM_MONITOR_KAFKA__*` / `CRM_MONITOR_SCHEMA_REGISTRY__*` for the monitor and `CRM_PRODUCER_KAFKA__*` /",
        "`CRM_PRODUCER_SCHEMA_REGISTRY__*` for the tools; `--bootstrap-servers` overrides the file for each.",
        "`crm-scorer config` prints the settings as read (`--monitor`: the monitor's), every secret masked.",
        "",
    ]
    sections: dict[str, list[SettingDoc]] = {"": []}  # top-level keys (guarantee, workers) first
    for doc in docs:
        sections.setdefault(doc.section, []).append(doc)
    for section, rows in sections.items():
        if not rows:
            continue
        lines += [f"## {section or 'Top level'}", "", "| key | environment | flag | type | default | description |"]
        lines.append("|---|---|---|---|---|---|")
        lines += [_row(doc) for doc in rows]
        lines.append("")
    return "\n".join(lines)


def _row(doc: SettingDoc) -> str:
    env, flag = f"`{doc.env}`" if doc.env else "-", f"`{doc.flag}`" if doc.flag else "-"
    cells = [f"`{doc.key}`", env, flag, doc.type, doc.default, doc.description]
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config-reference", help="print (or write) the configuration reference")
    parser.add_argument("--out", type=Path, default=None, help=f"write it here (e.g. {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="exit 1 when --out differs from what would be written")
    parser.set_defaults(handler=run)
    shown = subparsers.add_parser("config", help="print the settings as read (file, environment), secrets masked")
    shown.add_argument("--config", type=Path, default=None, help="scorer.yaml (monitor.yaml with --monitor)")
    shown.add_argument("--monitor", action="store_true", help="the monitor's settings rather than the scorer's")
    shown.add_argument("--connection", type=Path, default=None, help="the monitor's connection file")
    shown.set_defaults(handler=show)


def show(args: argparse.Namespace) -> int:
    """Print the effective settings as YAML; a ``SecretStr`` prints as ``**********``."""
    if args.monitor:
        from consumer.monitor.settings import load_monitor_settings

        dumped = load_monitor_settings(args.config, args.connection).model_dump(mode="json", by_alias=True)
    else:
        dumped = load_settings(args.config).safe_dump()
    sys.stdout.write(yaml.safe_dump(dumped, sort_keys=False))
    return 0


def run(args: argparse.Namespace) -> int:
    text = render_markdown(setting_docs())
    if args.out is None:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run crm-scorer config-reference --out {args.out}", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
