"""Local server processes: what every broker (and registry) launcher shares.

A :class:`ServerProcess` starts a command in its own session (the terminal's Ctrl-C stays with its owner), sends
its output to a log file, and can freeze (SIGSTOP), thaw, kill -9 or stop it. Errors are :class:`BrokerError`
carrying the tail of the log, so a server that does not come up says why in the exception itself.
:class:`LocalServer` is the base of the launchers (Apache Kafka, Tansu, Apicurio): the context manager, stop,
pause / resume / kill and the log's tail, over the processes a launcher started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

from producer_tools.errors import BrokerError

HOST = "127.0.0.1"
_LOG_TAIL_BYTES = 4000


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (another process may still take it before we bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when ``port`` can be bound on ``host``, with the same SO_REUSEADDR a server listener sets."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def accepts_connections(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _stopped_or_gone(pid: int) -> bool:
    """True when ``pid`` is stopped (SIGSTOP took effect) or no longer there to ask."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return True


class ServerProcess:
    """A command run in the background with its output appended to ``log_path``."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None):
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self._env = dict(os.environ) | dict(env or {})
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def pid(self) -> int:
        """Process id. Raises BrokerError if it is not running."""
        if self._process is None:
            raise BrokerError(f"{self.name} is not running")
        return self._process.pid

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Launch the command. Raises BrokerError naming the executable when it cannot run."""
        if self.is_running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            try:
                self._process = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=self._env,
                )
            except OSError as exc:
                raise BrokerError(f"cannot run {self.name} ({self.command[0]!r}): {exc}") from exc
        self._paused = False

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready`` until it is true. Raises BrokerError with the log's tail if the process exits or time
        runs out; ``what`` says what was awaited (\"listen on port 9092\")."""
        deadline = time.monotonic() + timeout
        while not ready():
            self.fail_if_exited()
            if time.monotonic() > deadline:
                self.fail(f"did not {what} within {timeout:.0f}s")
            time.sleep(0.05)

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): its connections stay open but nothing answers, like a hung server.
        Returns once the kernel shows it stopped (a busy process may run on for a moment after the signal)."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True
        deadline = time.monotonic() + 2.0
        while not _stopped_or_gone(self.pid) and time.monotonic() < deadline:
            time.sleep(0.005)

    def resume(self) -> None:
        """Thaw a paused process (SIGCONT)."""
        os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed or closed cleanly."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._paused = False

    def request_stop(self) -> None:
        """Send SIGTERM without waiting (stopping several servers at once); :meth:`stop` then waits."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        if self._paused:
            # A stopped process keeps SIGTERM pending until it is continued.
            os.kill(self._process.pid, signal.SIGCONT)
            self._paused = False

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Idempotent."""
        self.request_stop()
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, limit: int = _LOG_TAIL_BYTES) -> str:
        """The last ``limit`` bytes of the log, for error messages."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(max(0, self.log_path.stat().st_size - limit))
            return log.read().decode("utf-8", errors="replace")

    def fail_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self.fail(f"exited with status {self._process.returncode}")

    def fail(self, what: str) -> None:
        raise BrokerError(f"{self.name} {what}; its log ({self.log_path}) ends with:\n{self.log_tail()}")


class LocalServer:
    """The base of every launcher: ``with`` starts and stops it; :meth:`stop`, :meth:`pause`, :meth:`resume`,
    :meth:`kill` and :meth:`log_tail` act on the processes it started.

    Nothing starts in ``__init__``. A subclass launches its processes in :meth:`start`, lists them in
    :meth:`processes` and, in :meth:`_stopped`, forgets them and removes what it created. ``node_id`` picks one
    process where a launcher runs several (Apache Kafka's nodes); the others have one and take None.
    """

    name = "the server"
    stop_timeout = 10.0

    def processes(self) -> list[ServerProcess]:
        """The processes started and not yet stopped, the first one the main one."""
        raise NotImplementedError

    def start(self) -> Self:
        """Launch and wait until ready. Raises BrokerError with the log's tail when it does not come up."""
        raise NotImplementedError

    def _stopped(self) -> None:
        """Called once every process has stopped: forget them and remove what the launcher created."""

    @property
    def pid(self) -> int:
        """The main process's id. Raises BrokerError if it has not been started."""
        return self._chosen(None)[0].pid

    def is_running(self) -> bool:
        running = self.processes()
        return bool(running) and all(process.is_running() for process in running)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM every process, SIGKILL after ``timeout`` (default ``stop_timeout``); then clean up. Idempotent.

        Every process is asked at once: one by one, the last Kafka node would wait for a quorum that has left."""
        wait = self.stop_timeout if timeout is None else timeout
        running = self.processes()
        for process in running:
            process.request_stop()
        for process in running:
            process.stop(wait)
        self._stopped()

    def pause(self, node_id: int | None = None) -> None:
        """Freeze (SIGSTOP): connections stay open but nothing answers, like a hung server."""
        for process in self._chosen(node_id):
            process.pause()

    def resume(self, node_id: int | None = None) -> None:
        """Thaw what :meth:`pause` froze (SIGCONT)."""
        for process in self._chosen(node_id):
            process.resume()

    @contextlib.contextmanager
    def paused(self, node_id: int | None = None) -> Iterator[None]:
        """Pause for the duration of the block and resume even if the block raises."""
        self.pause(node_id)
        try:
            yield
        finally:
            self.resume(node_id)

    def kill(self, node_id: int | None = None) -> None:
        """kill -9, as a crash would; what was stored on disk stays for :meth:`start` again."""
        for process in self._chosen(node_id):
            process.kill()

    def log_tail(self) -> str:
        """The end of the main process's log, for error messages ("" before a start)."""
        running = self.processes()
        return running[0].log_tail() if running else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _chosen(self, node_id: int | None) -> list[ServerProcess]:
        """The processes ``node_id`` names (every one when None). Raises BrokerError when none was started."""
        running = self.processes()
        if not running:
            raise BrokerError(f"{self.name} is not running: call start() or use it as a context manager")
        if node_id is not None:
            raise BrokerError(f"{self.name} runs one process: it has no node {node_id}")
        return running
