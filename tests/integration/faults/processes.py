"""The scorer's processes as the kernel shows them (read from /proc): its workers, their memory, the port its
telemetry endpoint listens on."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tests.integration.harness import ScorerProcess

_LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (read from /proc, no psutil needed)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def worker_pids(scorer: ScorerProcess) -> list[int]:
    """The scorer's worker processes (spawned interpreters), leaving out multiprocessing's helpers."""
    assert scorer.process is not None
    pids = []
    for pid in child_pids(scorer.process.pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            pids.append(pid)
    return sorted(pids)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def listening_port(pid: int) -> int | None:
    """The TCP port ``pid`` listens on (the scorer's only listener is its telemetry endpoint), from /proc."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
        tables = [table.read_text() for table in Path(f"/proc/{pid}/net").glob("tcp*")]  # tcp, and tcp6 if any
    except OSError:  # not listening yet, or gone (wait_until then reports the exit)
        return None
    links = []
    for fd in fds:
        with contextlib.suppress(OSError):  # a descriptor closed since the listing (the process is busy)
            links.append(os.readlink(fd))
    sockets = {link[len("socket:[") : -1] for link in links if link.startswith("socket:[")}
    for table in tables:
        for row in table.splitlines()[1:]:
            fields = row.split()
            if fields[3] == _LISTEN and fields[9] in sockets:
                return int(fields[1].rsplit(":", 1)[1], 16)
    return None
