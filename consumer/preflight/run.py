"""Run a plan's checks in order, one line each, and the exit code of the first that fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from consumer.exit_codes import OK
from consumer.preflight.checks import Check, artifacts_check, reasons_check, registry_check
from consumer.preflight.kafka_checks import Brokers, acls_check, broker_check, topics_check
from consumer.preflight.plan import Plan


def checks(
    plan: Plan, brokers: Brokers, load_models: Callable[[Any], Any], registry: Callable[[dict[str, Any]], Any]
) -> Iterator[Check]:
    """Every check of ``plan`` after the settings (already read): the ones needing a broker are skipped, with a
    line saying so, when it does not answer."""
    if plan.models is not None:
        artifacts, loaded = artifacts_check(plan.models, load_models)
        yield artifacts
        if loaded is not None:
            yield reasons_check(plan.models, loaded)
    broker = broker_check(brokers, str(plan.conf.get("bootstrap.servers", "?")))
    yield broker
    if broker.ok:
        # the ACLs first: a topic the principal may not describe would otherwise look missing
        yield acls_check(brokers, plan.acls)
        yield topics_check(brokers, plan.topics, plan.copartitioned)
    else:
        yield Check("acls", detail="no broker", skipped=True)
        yield Check("topics", detail="no broker", skipped=True)
    yield registry_check(plan.registry, plan.subject, registry)


def report(results: list[Check], write: Callable[[str], Any] = print) -> int:
    """Print one line per check and a last line naming the first failure; its exit code (0: all passed)."""
    for check in results:
        write(check.line())
    first = next((check for check in results if not check.ok), None)
    if first is None:
        write(f"all {len(results)} checks passed")
        return OK
    write(f"check failed: {first.name} (exit {first.code})")
    return first.code
