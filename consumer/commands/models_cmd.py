"""``crm-scorer models list|verify|add|activate VERSION|rollback``: the model store and its activations.

``activate`` and ``rollback`` verify the set first (every file's sha256, the feature-pipeline version, every
configured bank and the lead present), record it in the store and publish it on the control topic, which every
running worker follows (docs/model-lifecycle.md). A set that fails verification changes nothing.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from confluent_kafka import KafkaException

from consumer.kafka.model_control import publish_activation
from consumer.settings import Settings, load_settings
from models.store import Activation, ModelStore
from schemas.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, verify, add, activate or roll back model sets")
    parser.add_argument("--config", type=Path, default=None, help="scorer.yaml (default: configs/scorer.yaml)")
    parser.add_argument("--store", type=Path, help="models.store_dir")
    parser.add_argument("--bootstrap-servers", help="kafka.bootstrap_servers (activate, rollback)")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every set: version, parent, pipeline, created, models; * = active")
    verify = actions.add_parser("verify", help="check sets (default: every set); one line per problem")
    verify.add_argument("versions", nargs="*", metavar="VERSION")
    add = actions.add_parser("add", help="copy a trained set (a directory with manifest.json) into the store")
    add.add_argument("directory", type=Path)
    activate = actions.add_parser("activate", help="verify a set, make it active and tell every running scorer")
    activate.add_argument("version", metavar="VERSION")
    rollback = actions.add_parser("rollback", help="return to the set active before the current one")
    for sub in (activate, rollback):
        sub.add_argument("--reason", default="", help="why, recorded and published with the activation")
        sub.add_argument("--by", default=None, help="who (default: the user running the command)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    overrides = {"models": {"store_dir": args.store}, "kafka": {"bootstrap_servers": args.bootstrap_servers}}
    settings = load_settings(args.config, **overrides)
    if settings.models.store_dir is None:
        raise ConfigError("no model store: set models.store_dir (or pass --store DIR)")
    store = ModelStore(settings.models.store_dir)
    if args.action == "list":
        return _list(store)
    if args.action == "verify":
        return _verify(store, args.versions or store.versions(), _configured(settings))
    if args.action == "add":
        print(f"added model set {store.add(args.directory)} to {store.root}")
        return 0
    by = args.by or getpass.getuser()
    if args.action == "activate":
        activation = store.activate(args.version, _configured(settings), by, args.reason)
    else:
        activation = store.rollback(_configured(settings), by, args.reason)
    return _publish(settings, activation)


def _configured(settings: Settings) -> list[str]:
    return [*(bank.name for bank in settings.models.banks), "lead"]


def _list(store: ModelStore) -> int:
    active = store.active()
    versions = store.versions()
    if not versions:
        print(f"no model sets in {store.root}")
        return 0
    print(f"  {'version':<14} {'parent':<14} {'pipeline':<17} created")
    for version in versions:
        manifest = store.manifest(version)
        mark = "*" if version == active else " "
        parent = manifest.parent or "-"
        pipeline = manifest.pipeline_version or "-"
        print(f"{mark} {version:<14} {parent:<14} {pipeline:<17} {store.created(version)}")
        print("    " + ", ".join(f"{name} {entry.version}" for name, entry in manifest.models.items()))
    return 0


def _verify(store: ModelStore, versions: list[str], models: list[str]) -> int:
    failed = 0
    for version in versions:
        problems = store.problems(version, models)
        for problem in problems:
            print(problem)
        if not problems:
            print(f"{version}: ok")
        failed += bool(problems)
    return 1 if failed else 0


def _publish(settings: Settings, activation: Activation) -> int:
    topic, channel = settings.models.control_topic, settings.models.channel
    try:
        publish_activation(settings.librdkafka("producer", 0), topic, channel, activation)
    except KafkaException as exc:
        print(
            f"crm-scorer models: model set {activation.version} is recorded as active in the store but was not "
            f"published on {topic} ({exc.args[0].str()}): run the same command again",
            file=sys.stderr,
        )
        return 5
    print(f"model set {activation.version} active (channel {channel} on {topic}), by {activation.by}")
    return 0
