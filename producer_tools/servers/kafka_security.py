"""A secured local Apache Kafka: a throwaway CA, a broker certificate, SCRAM-SHA-512 users and the authorizer.

:class:`KafkaSecurity` is what :class:`producer_tools.servers.apache_kafka.ApacheKafka` takes as ``security=``: clients
meet a ``SASL_SSL`` listener (TLS with the CA made here, then SCRAM-SHA-512 with the users made here), the
controller listener is TLS with client certificates (the broker authenticates with its own certificate, whose
principal ``User:CN=broker`` is a super-user, so KRaft never needs SCRAM before its metadata is loaded), and the
``StandardAuthorizer`` refuses everything no ACL allows. SCRAM credentials are written into the metadata log at
format time (``StorageTool format --add-scram``), so every user exists before the first client connects.

The CA and the certificates live in memory and in PEM files in ``folder``; passwords are random per instance.
``issue`` makes more certificates from the same CA (an expired one) or from a foreign CA (an untrusted one), for
tests of what a client does with them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
# The principals the README's security section names: the operator, the scorer, the producer tools, the monitor.
DEFAULT_USERS = (ADMIN, "crm-scorer", "crm-producer", "crm-monitor")
BROKER_PRINCIPAL = "User:CN=broker"
_VALIDITY = dt.timedelta(days=2)
_CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA: its key signs the certificates it issues."""

    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def create(cls, name: str) -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(name, key, cert)

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, common_name: str, *, valid_from: dt.datetime | None = None, valid_until: dt.datetime | None = None
    ) -> tuple[bytes, bytes]:
        """A certificate for ``common_name`` valid for 127.0.0.1 and localhost, as (key PEM, certificate PEM).

        The key is unencrypted PKCS#8, as Kafka's PEM key store reads it; usable by a server and a client.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from or now - dt.timedelta(minutes=5))
            .not_valid_after(valid_until or now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, _CLIENT_AUTH]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class KafkaSecurity:
    """TLS material and SCRAM users of one secured broker; write it to ``folder`` with :meth:`write`.

    ``broker_certificate``: (key PEM, certificate PEM) the broker presents; default one issued by ``ca``, valid now.
    """

    folder: Path
    users: dict[str, str] = field(default_factory=lambda: {name: secrets.token_urlsafe(18) for name in DEFAULT_USERS})
    ca: CertificateAuthority = field(default_factory=lambda: CertificateAuthority.create("crm-scorer test CA"))
    broker_certificate: tuple[bytes, bytes] | None = None

    @property
    def ca_path(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def broker_pem_path(self) -> Path:
        return self.folder / "broker.pem"

    def write(self) -> KafkaSecurity:
        """Write the CA certificate and the broker's key and certificate chain as PEM files (idempotent)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.broker_certificate is None:
            self.broker_certificate = self.ca.issue("broker")
        key, cert = self.broker_certificate
        self.ca_path.write_bytes(self.ca.pem())
        self.broker_pem_path.write_bytes(key + cert + self.ca.pem())
        self.broker_pem_path.chmod(0o600)
        return self

    def password(self, user: str) -> str:
        """The SCRAM password of ``user``. Raises KeyError naming the user when there is none."""
        if user not in self.users:
            raise KeyError(f"no SCRAM user {user!r} (users: {', '.join(sorted(self.users))})")
        return self.users[user]

    def client_config(self, user: str = ADMIN, password: str | None = None) -> dict[str, Any]:
        """librdkafka properties of a client authenticating as ``user`` (``password`` overrides the real one)."""
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": MECHANISM,
            "sasl.username": user,
            "sasl.password": self.password(user) if password is None else password,
            "ssl.ca.location": str(self.ca_path),
        }

    def scram_arguments(self) -> list[str]:
        """``StorageTool format`` arguments creating every user's SCRAM-SHA-512 credential."""
        args = []
        for user, password in self.users.items():
            args += ["--add-scram", f"{MECHANISM}=[name={user},password={password}]"]
        return args

    def server_settings(self, broker_address: str, controller_address: str) -> dict[str, str]:
        """The ``server.properties`` that secure one node (its listeners included)."""
        admin = self.password(ADMIN)
        login = "org.apache.kafka.common.security.scram.ScramLoginModule"
        jaas = f'{login} required username="{ADMIN}" password="{admin}";'
        return {
            "listeners": f"SASL_SSL://{broker_address},CONTROLLER://{controller_address}",
            "advertised.listeners": f"SASL_SSL://{broker_address}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.broker_pem_path),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_path),
            "listener.name.controller.ssl.client.auth": "required",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": f"User:{ADMIN};{BROKER_PRINCIPAL}",
        }
