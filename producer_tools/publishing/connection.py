"""A bootstrap address that carries the whole connection of the command's principal.

The publishing functions take the broker address as text (they print it in their errors). ``Brokers`` is that
text, and carries the librdkafka properties of the connection (security protocol, credentials, CA file...) that
``client_config`` hands to every client they build: the address is all an error or a log line ever shows, the
properties never reach a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Brokers(str):
    """The bootstrap servers of ``conf``, as text, carrying ``conf`` for the clients (never shown)."""

    config: dict[str, Any]

    def __new__(cls, conf: Mapping[str, Any]) -> Brokers:
        brokers = super().__new__(cls, str(conf["bootstrap.servers"]))
        brokers.config = dict(conf)
        return brokers

    def __reduce__(self) -> tuple[type[Brokers], tuple[dict[str, Any]]]:  # copies keep the connection
        return (Brokers, (self.config,))


def client_config(brokers: str) -> dict[str, Any]:
    """The connection properties of every client reaching ``brokers`` (a plain address: just the address)."""
    if isinstance(brokers, Brokers):
        return dict(brokers.config)
    return {"bootstrap.servers": brokers}
