"""``crm-scorer models list|verify|add|activate VERSION|rollback|shadow VERSION|promote MODEL``: the model store.

``activate`` and ``rollback`` verify the set first (every file's sha256, the feature-pipeline version, every
configured bank and the lead present), record it in the store and publish it on the control topic, which every
running worker follows (docs/model-lifecycle.md). A set that fails verification changes nothing. ``shadow``
makes a set's models challengers (scored beside the active ones, never the decision; ``--clear`` ends it);
``promote`` activates the challenger's set once the monitor's paired comparison says it wins.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from confluent_kafka import KafkaException

from consumer.commands.promotion import read_verdict
from consumer.control_topic import ensure_copartitioned, publish
from consumer.exit_codes import FAILED
from consumer.kafka.model_control import ensure_control_topic, publish_activation
from consumer.settings import Settings, load_settings
from models import challengers
from models.store import Activation, ModelStore, StoreError
from schemas.errors import ConfigError

MONITOR_METRICS = "http://127.0.0.1:9410/metrics"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, verify, add, activate or roll back model sets")
    parser.add_argument("--config", type=Path, default=None, help="scorer.yaml (default: configs/scorer.yaml)")
    parser.add_argument("--store", type=Path, help="models.store_dir")
    parser.add_argument("--bootstrap-servers", help="kafka.bootstrap_servers (activate, rollback)")
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every set: version, parent, pipeline, created, models; * = active; the challenger")
    verify = actions.add_parser("verify", help="check sets (default: every set); one line per problem")
    verify.add_argument("versions", nargs="*", metavar="VERSION")
    add = actions.add_parser("add", help="copy a trained set (a directory with manifest.json) into the store")
    add.add_argument("directory", type=Path)
    activate = actions.add_parser("activate", help="verify a set, make it active and tell every running scorer")
    activate.add_argument("version", metavar="VERSION")
    rollback = actions.add_parser("rollback", help="return to the set active before the current one")
    shadow = actions.add_parser("shadow", help="score a set's models beside the active ones, never as the decision")
    shadow.add_argument("version", nargs="?", metavar="VERSION")
    shadow.add_argument(
        "--model",
        action="append",
        default=[],
        help="a model to challenge (repeat; default: every model whose version differs from the active set's)",
    )
    shadow.add_argument("--clear", action="store_true", help="no challenger any more")
    promote = actions.add_parser("promote", help="activate the challenger's set if it wins (docs/model-lifecycle.md)")
    promote.add_argument("model", metavar="MODEL")
    promote.add_argument("--monitor", default=MONITOR_METRICS, help="the monitor's metrics URL (its verdict)")
    promote.add_argument("--force", action="store_true", help="promote without a winning verdict (say why: --reason)")
    for sub in (activate, rollback, shadow, promote):
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
    if args.action == "shadow":
        return _shadow(settings, store, args, by)
    if args.action == "promote":
        return _promote(settings, store, args, by)
    if args.action == "activate":
        store.check(args.version, _configured(settings))  # bad input named before the brokers are asked
    if not _control_topic_answers(settings):
        return 5
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
    shadow = challengers.current(store)
    if shadow is not None and not shadow.cleared:
        print(f"challenger: {shadow.version} ({', '.join(shadow.models)}), by {shadow.by} at {shadow.at}")
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


def _control_topic_answers(settings: Settings) -> bool:
    """Whether the brokers answer (the control topic created if missing), checked before anything is recorded."""
    topic = settings.models.control_topic
    try:
        ensure_control_topic(settings.librdkafka("producer", 0), topic)
    except KafkaException as exc:
        print(f"crm-scorer models: cannot reach {topic} ({exc.args[0].str()}); nothing changed", file=sys.stderr)
        return False
    return True


def _publish(settings: Settings, activation: Activation) -> int:
    topic, channel = settings.models.control_topic, settings.models.channel
    try:
        publish_activation(settings.librdkafka("producer", 0), topic, channel, activation)
    except KafkaException as exc:
        print(
            f"crm-scorer models: model set {activation.version} is recorded as active in the store but was not "
            f"published on {topic} ({exc.args[0].str()}): run `crm-scorer models activate {activation.version}` "
            "again (activating the active set publishes it again)",
            file=sys.stderr,
        )
        return 5
    print(f"model set {activation.version} active (channel {channel} on {topic}), by {activation.by}")
    return 0


def _shadow(settings: Settings, store: ModelStore, args: argparse.Namespace, by: str) -> int:
    if args.clear == (args.version is not None):
        raise ConfigError("models shadow: name a VERSION, or --clear (not both)")
    if args.clear:
        record = challengers.clear(store, by, args.reason)
    else:
        models = tuple(args.model) or _changed(store, args.version)
        record = challengers.shadow(store, args.version, models, by, args.reason)
    topic = settings.models.control_topic
    try:
        if not record.cleared:  # the scores' topic first: a worker that takes the challenger produces to it at once
            ensure_copartitioned(
                settings.librdkafka("producer", 0), settings.models.shadow_topic, settings.topics.output
            )
        publish(
            settings.librdkafka("producer", 0), topic, challengers.shadow_key(settings.models.channel), record.to_json()
        )
    except KafkaException as exc:
        problem = exc.args[0].str()
        print(
            f"crm-scorer models: the challenger is recorded in the store but was not published on {topic} "
            f"({problem}): run the same command again",
            file=sys.stderr,
        )
        return 5
    what = (
        f"model set {record.version} challenges with {', '.join(record.models)}"
        if not record.cleared
        else "no challenger"
    )
    print(f"{what} (channel {settings.models.channel} on {topic}; scores on {settings.models.shadow_topic}), by {by}")
    return 0


def _changed(store: ModelStore, version: str) -> tuple[str, ...]:
    """The models of set ``version`` whose version differs from the active set's."""
    mine, active = store.manifest(version).models, store.manifest(store.active_dir().name).models
    changed = tuple(name for name, entry in mine.items() if name not in active or active[name].version != entry.version)
    if not changed:
        raise StoreError(f"model set {version}: every model is the active set's; name one with --model")
    return changed


def _promote(settings: Settings, store: ModelStore, args: argparse.Namespace, by: str) -> int:
    record = challengers.current(store)
    if record is None or record.cleared or args.model not in record.models:
        raise StoreError(f"no challenger of {args.model}: run `crm-scorer models shadow VERSION` first")
    verdict = read_verdict(args.monitor, args.model)
    print(verdict.line())
    if not verdict.wins and not args.force:
        print(f"crm-scorer models: {args.model}'s challenger does not win (yet): not promoted", file=sys.stderr)
        return FAILED
    reason = args.reason or f"promote {args.model}: {verdict.line()}"
    activation = store.activate(record.version, _configured(settings), by, reason, action="promote")
    code = _publish(settings, activation)
    if code == 0:
        cleared = challengers.clear(store, by, f"promoted {record.version}")
        key = challengers.shadow_key(settings.models.channel)
        try:
            publish(settings.librdkafka("producer", 0), settings.models.control_topic, key, cleared.to_json())
        except KafkaException as exc:  # the workers drop a challenger whose set becomes active anyway
            print(f"crm-scorer models: the challenger's end was not published ({exc.args[0].str()})", file=sys.stderr)
    return code
