"""The Confluent Schema Registry behind the ``SchemaSource`` protocol, with its exceptions translated.

This is the only module of ``schemas`` that imports confluent_kafka; the decoding core never does.
"""

from __future__ import annotations

from typing import Any, Protocol

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.error import OAuthTokenError

from schemas.errors import ConfigError, RegistryUnavailableError, UnknownSchemaError

try:  # the client's own HTTP library (httpx2, or httpx), so its network errors are recognised as such
    from confluent_kafka.schema_registry.common._httpx_compat import httpx

    _NETWORK_ERRORS: tuple[type[BaseException], ...] = (httpx.TransportError, OAuthTokenError, OSError)
except ImportError:  # pragma: no cover - a future client may move it; OSError still covers sockets
    _NETWORK_ERRORS = (OAuthTokenError, OSError)

_TRANSIENT_STATUS = frozenset({408, 429})


class RegistryClient(Protocol):
    """The two calls we make of ``confluent_kafka.schema_registry.SchemaRegistryClient``."""

    def get_schema(self, schema_id: int) -> Schema: ...

    def register_schema(self, subject_name: str, schema: Schema) -> int: ...

    def close(self) -> None: ...


def value_subject(topic: str) -> str:
    """The subject of a topic's values under the default TopicNameStrategy: ``<topic>-value``."""
    return f"{topic}-value"


class RegistrySchemaSource:
    """A ``SchemaSource`` backed by a ``SchemaRegistryClient`` (a real one, or its ``mock://`` twin in tests)."""

    def __init__(self, client: RegistryClient) -> None:
        self._client = client

    @classmethod
    def from_url(cls, url: str, **conf: Any) -> RegistrySchemaSource:
        """A source for the registry at ``url`` (``mock://<name>`` gives the in-process mock). No network here."""
        return cls(SchemaRegistryClient.new_client({"url": url, **conf}))

    def close(self) -> None:
        """Close the client's HTTP connections (a long-lived scorer never needs to; a tool or a test does)."""
        self._client.close()

    def get_schema_str(self, schema_id: int) -> str:
        """The Avro schema JSON registered under ``schema_id``.

        Raises:
            UnknownSchemaError: the registry answered 404, or the id holds a non-Avro schema.
            RegistryUnavailableError: network error, timeout, 5xx, 408 or 429.
            ConfigError: the registry refused us (401, 403, ...): fix the ``schema_registry`` settings.
        """
        where = f"registry id {schema_id}"
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            raise _translate(exc, where) from exc
        except _NETWORK_ERRORS as exc:
            raise RegistryUnavailableError(f"{where}: schema registry unreachable: {exc}") from exc
        if schema.schema_type not in (None, "AVRO"):
            raise UnknownSchemaError(f"{where}: a {schema.schema_type} schema, not Avro")
        if not schema.schema_str:
            raise UnknownSchemaError(f"{where}: the registry returned no schema text")
        return schema.schema_str

    def register_schema(self, subject: str, schema_str: str) -> int:
        """Register (or find) the Avro schema ``schema_str`` under ``subject``; its registry id.

        Raises:
            RegistryUnavailableError: network error, timeout, 5xx, 408 or 429.
            ConfigError: the registry refused it (incompatible with the subject, not authorised, ...).
        """
        where = f"subject {subject}"
        try:
            return self._client.register_schema(subject, Schema(schema_str, schema_type="AVRO"))
        except SchemaRegistryError as exc:
            error = _translate(exc, where)
            raise (ConfigError(str(error)) if isinstance(error, UnknownSchemaError) else error) from exc
        except _NETWORK_ERRORS as exc:
            raise RegistryUnavailableError(f"{where}: schema registry unreachable: {exc}") from exc


def _translate(exc: SchemaRegistryError, where: str) -> Exception:
    status = exc.http_status_code
    message = f"{where}: {exc.error_message} (HTTP {status}, registry code {exc.error_code})"
    if status == 404:
        return UnknownSchemaError(message)
    if status >= 500 or status in _TRANSIENT_STATUS or status < 0:
        return RegistryUnavailableError(message)
    return ConfigError(message)
