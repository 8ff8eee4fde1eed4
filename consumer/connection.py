"""How every command reaches Kafka and the Schema Registry: one typed connection model of each.

``crm-scorer run``, ``crm-scorer monitor`` and every ``crm-producer`` command that talks to Kafka read their
``kafka:`` and ``schema_registry:`` sections with these models, so one file (the scorer's own scorer.yaml, or a
file holding just those two sections) connects all of them. Secrets are ``SecretStr`` (or a file path) and are
revealed only by ``KafkaConnection.librdkafka`` and ``RegistryConnection.client_config``, to the client
libraries themselves; every dump, repr and error shows them masked.

``extra`` passes further librdkafka properties; one that contradicts a property a setting decides (the
bootstrap servers, the security protocol, the credentials, certificate verification...) is an error naming
that setting.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, model_validator

from schemas.errors import ConfigError

Extra = dict[str, str | int | bool]
# Property -> (the setting, or the guarantee, that decides it; its value).
Owned = dict[str, tuple[str, Any]]
MASK = "***"
# librdkafka properties that hold a secret (sasl.password, ssl.key.password, sasl.oauthbearer.client.secret,
# sasl.jaas.config, ssl.key.pem...): masked wherever an extra is dumped.
_SECRET_WORDS = ("password", "secret", "jaas", "key.pem", "token")
# Keys of a `kafka:` section that belong to one command (its client id, the scorer's extras per client, the
# monitor's group): a connection file may carry them (scorer.yaml, monitor.yaml); the other commands leave them.
COMMAND_KEYS = frozenset({"client_id", "consumer_extra", "producer_extra", "group_id", "session_timeout_ms"})


class KafkaConnection(BaseModel):
    """Where the brokers are and how to authenticate to them: the ``kafka:`` section every command reads."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]")
    client_id: str | None = Field(None, description="client.id the brokers see in their logs and quotas")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="librdkafka security.protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism; set together with sasl_username and a password"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="Prefer sasl_password_file or the environment")
    sasl_password_file: Path | None = Field(None, description="A file holding the SASL password (a mounted secret)")
    ssl_ca_location: Path | None = Field(None, description="CA certificate file for SSL / SASL_SSL")
    ssl_certificate_location: Path | None = Field(
        None, description="Client certificate file (PEM), for brokers that authenticate clients by TLS"
    )
    ssl_key_location: Path | None = Field(None, description="The client certificate's private key file (PEM)")
    ssl_key_password: SecretStr | None = Field(None, description="Password of ssl_key_location, if it has one")
    ssl_verify: bool = Field(
        True,
        description="Verify the broker's certificate and host name (SSL / SASL_SSL); false turns both off, logs a "
        "warning at start, and is for a test cluster only",
    )
    extra: Extra = Field(
        default_factory=dict,
        description="More librdkafka properties, over the defaults; a property a setting (or the scorer's "
        "guarantee) sets is refused unless it agrees",
    )

    @field_serializer("extra")
    def _masked_extra(self, extra: Extra) -> Extra:
        return masked(extra)

    @model_validator(mode="after")
    def _extra_agrees_with_the_connection(self) -> KafkaConnection:
        check_extra("kafka.extra", self.extra, self.owned(reveal=False))
        if (self.ssl_key_location is None) != (self.ssl_certificate_location is None):
            raise ValueError("kafka.ssl_certificate_location and kafka.ssl_key_location go together: set both")
        return self

    def password(self) -> str | None:
        """The SASL password (read from ``sasl_password_file`` when one is named).

        Raises:
            ConfigError: the password file cannot be read (the error names the file, never its content).
        """
        if self.sasl_password_file is not None:
            try:
                return self.sasl_password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"kafka.sasl_password_file: cannot read {self.sasl_password_file}: {exc}") from exc
        return self.sasl_password.get_secret_value() if self.sasl_password else None

    def owned(self, reveal: bool = True) -> Owned:
        """The connection's librdkafka properties and the setting that decides each.

        The only place a secret is revealed (``reveal``; else masked, and a password file is not read).
        """
        owned: Owned = {
            "bootstrap.servers": ("kafka.bootstrap_servers", self.bootstrap_servers),
            "security.protocol": ("kafka.security_protocol", self.security_protocol),
        }
        if self.client_id is not None:
            owned["client.id"] = ("kafka.client_id", self.client_id)
        if self.sasl_mechanism:
            password = (self.password() or "") if reveal else MASK
            owned["sasl.mechanism"] = ("kafka.sasl_mechanism", self.sasl_mechanism)
            owned["sasl.username"] = ("kafka.sasl_username", self.sasl_username or "")
            owned["sasl.password"] = ("kafka.sasl_password", password)
        owned |= self._tls_files(reveal)
        # librdkafka verifies both by default; owned, so an extra cannot turn them off behind kafka.ssl_verify
        owned["enable.ssl.certificate.verification"] = ("kafka.ssl_verify", self.ssl_verify)
        owned["ssl.endpoint.identification.algorithm"] = ("kafka.ssl_verify", "https" if self.ssl_verify else "none")
        if not self.ssl_verify and reveal and self.security_protocol in ("SSL", "SASL_SSL"):
            _warn_once(
                "kafka.ssl_verify is false: the broker's certificate and host name are not verified, so anyone on "
                "the network path can pose as the broker and read the credentials and the data; for a test "
                "cluster only"
            )
        return owned

    def _tls_files(self, reveal: bool) -> Owned:
        owned: Owned = {}
        files = {
            "ssl.ca.location": ("kafka.ssl_ca_location", self.ssl_ca_location),
            "ssl.certificate.location": ("kafka.ssl_certificate_location", self.ssl_certificate_location),
            "ssl.key.location": ("kafka.ssl_key_location", self.ssl_key_location),
        }
        for key, (setting, path) in files.items():
            if path is not None:
                owned[key] = (setting, str(path))
        if self.ssl_key_password is not None:
            secret = self.ssl_key_password.get_secret_value() if reveal else MASK
            owned["ssl.key.password"] = ("kafka.ssl_key_password", secret)
        return owned

    def librdkafka(
        self, defaults: dict[str, Any] | None = None, extras: tuple[Extra, ...] = (), owned: Owned | None = None
    ) -> dict[str, Any]:
        """The librdkafka dict of one client. Precedence, lowest first: ``defaults``, ``kafka.extra``, ``extras``
        (a command's own, already checked), then the connection's properties and the command's ``owned`` ones.

        Raises:
            ConfigError: the password file cannot be read.
        """
        conf = dict(defaults or {}) | self.extra
        for extra in extras:
            conf |= extra
        decided = self.owned() | (owned or {})
        return conf | {key: value for key, (_setting, value) in decided.items()}


def check_extra(source: str, extra: Extra, owned: Owned) -> None:
    """Refuse an extra property that contradicts one a setting decides (a secret shown masked).

    Raises:
        ValueError: the first contradiction, naming ``source``, the property and the setting.
    """
    for key, value in extra.items():
        if key in owned and text(value) != text(owned[key][1]):
            raise ValueError(contradiction(source, key, value, *owned[key]))


def masked(extra: Extra) -> Extra:
    """``extra`` with the value of every property that holds a secret replaced by ``***``."""
    return {key: MASK if is_secret(key) else value for key, value in extra.items()}


def is_secret(key: str) -> bool:
    return any(word in key for word in _SECRET_WORDS)


def contradiction(source: str, key: str, value: object, setting: str, wanted: object) -> str:
    shown = MASK if is_secret(key) else text(value)
    if setting.startswith("guarantee="):
        return f"{source} sets {key}={shown}, but {setting} rests on {key}={text(wanted)}: remove it"
    return f"{source} sets {key}={shown} but {setting} is {text(wanted)}: choose it with {setting} only"


def text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class RegistryConnection(BaseModel):
    """The Confluent-compatible Schema Registry: the ``schema_registry:`` section every command reads."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="Confluent Schema Registry; unset = single-object framing")
    basic_auth_user: str | None = Field(None, description="Basic-auth user name for the Schema Registry")
    basic_auth_password: SecretStr | None = Field(None, description="Basic-auth password (prefer the environment)")
    basic_auth_user_info: SecretStr | None = Field(
        None, description="USER:PASSWORD in one (instead of basic_auth_user and basic_auth_password)"
    )
    ssl_ca_location: Path | None = Field(None, description="CA certificate file of an https registry")

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> RegistryConnection:
        if self.basic_auth_user_info is not None and (self.basic_auth_user or self.basic_auth_password):
            raise ValueError(
                "schema_registry.basic_auth_user_info and schema_registry.basic_auth_user/basic_auth_password "
                "both set: choose one"
            )
        if (self.basic_auth_user is None) != (self.basic_auth_password is None):
            raise ValueError("schema_registry.basic_auth_user and schema_registry.basic_auth_password go together")
        return self

    def client_config(self) -> dict[str, Any]:
        """The ``SchemaRegistryClient`` config (the one place its password is revealed); {} with no URL."""
        if not self.url:
            return {}
        conf: dict[str, Any] = {"url": self.url}
        if self.basic_auth_user_info is not None:
            conf["basic.auth.user.info"] = self.basic_auth_user_info.get_secret_value()
        elif self.basic_auth_user is not None and self.basic_auth_password is not None:
            conf["basic.auth.user.info"] = f"{self.basic_auth_user}:{self.basic_auth_password.get_secret_value()}"
        if self.ssl_ca_location is not None:
            conf["ssl.ca.location"] = str(self.ssl_ca_location)
        return conf


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """Log ``message`` once per process (a client's properties are assembled once per client)."""
    if message not in _warned:
        _warned.add(message)
        logging.getLogger(__name__).warning("%s", message)
