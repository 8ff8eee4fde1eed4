"""What the benchmark's processes and everyone else's took of the CPU while a phase ran.

A shared 2-core machine makes every figure depend on it: ``CpuWatch`` samples the machine's busy time and that of
this process and its descendants, by role (``process_role``), so a phase reports the CPU other processes took
and each role's cost per event.
"""

from __future__ import annotations

import os
import threading
import time

import psutil


class CpuWatch:
    """Measures how much CPU processes outside this benchmark used while it ran (a shared 2-core machine
    makes every number depend on it), and what this benchmark's own processes used, by role. Samples every
    ``interval_s``: the system's busy time minus that of this process and its descendants (the broker, the
    scorers). Use as a context manager; ``other_percent`` is the average, in percent of one CPU; ``role_s`` the
    CPU seconds of each role (``broker``, ``scorer``, ``relay``, ``engine``, ``bench``: this process, which
    offers the load and reads the results back; ``other``: any other child). A process that ends between two
    samples loses its last interval."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self.other_percent = 0.0
        self.kernel_percent = 0.0  # of which interrupt and softirq time, the kernel's, owned by no process
        self.role_s: dict[str, float] = {}
        self._kernel_s = 0.0
        self._roles: dict[int, str] = {}
        self._other_s = 0.0
        self._seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-watch", daemon=True)

    def __enter__(self) -> CpuWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        if self._seconds > 0:
            self.other_percent = max(0.0, 100.0 * self._other_s / self._seconds)
            self.kernel_percent = 100.0 * self._kernel_s / self._seconds

    def _run(self) -> None:
        system, own, started = _system_busy_s(), _tree_cpu_s(os.getpid()), time.monotonic()
        kernel = _kernel_s()
        for pid in own:
            self._role(pid)
        while True:
            stopped = self._stop.wait(self.interval_s)
            system2, own2, now = _system_busy_s(), _tree_cpu_s(os.getpid()), time.monotonic()
            for pid, (seconds, _) in own2.items():
                used = max(0.0, seconds - own.get(pid, (0.0, 0.0))[0])
                role = self._role(pid)
                self.role_s[role] = self.role_s.get(role, 0.0) + used
            # The tree's CPU with what each process's reaped children used: a process that ended between two
            # samples moved its whole CPU into its parent's, so its last interval is not lost and taken for
            # another process's (a short command, a worker that stopped).
            mine = sum(total for _, total in own2.values()) - sum(total for _, total in own.values())
            # Signed: the two readings are taken a moment apart, so an interval's figure is off either way;
            # clipping each at zero kept the errors one way only and read a busy, quiet machine as shared.
            self._other_s += system2 - system - mine
            kernel2 = _kernel_s()
            self._kernel_s += max(0.0, kernel2 - kernel)
            self._seconds += now - started
            system, own, started, kernel = system2, own2, now, kernel2
            if stopped:
                return

    def _role(self, pid: int) -> str:
        role = self._roles.get(pid)
        if role is None:
            role = self._roles[pid] = process_role(pid)
        return role


def process_role(pid: int) -> str:
    """What a process of the benchmark is, from its command line or its nearest ancestor's below this process
    (a scorer's worker processes are the scorer's; see ``CpuWatch``)."""
    if pid == os.getpid():
        return "bench"
    try:
        process = psutil.Process(pid)
        lineage = [process, *process.parents()]
    except psutil.Error:
        return "other"
    for ancestor in lineage:
        if ancestor.pid == os.getpid():
            break
        try:
            role = _role_of(ancestor.cmdline())
        except psutil.Error:
            continue
        if role != "other":
            return role
    return "other"


def _role_of(words: list[str]) -> str:
    line = " ".join(words)
    if (words and "java" in words[0]) or "tansu" in line:
        return "broker"
    if "producer_tools.bench.relay" in line:
        return "relay"
    if "bench-engine" in words:
        return "engine"
    if "run" in words and ("consumer.commands.cli" in line or "crm-scorer" in line):
        return "scorer"
    return "other"


def _kernel_s() -> float:
    """CPU seconds spent in interrupts and softirqs since boot: the kernel's work for every process (much of it
    loopback networking between the bench's own clients and broker), counted in ``other`` as no process owns it."""
    times = psutil.cpu_times()
    return float(times.irq + times.softirq)


def _system_busy_s() -> float:
    """Busy CPU seconds of all CPUs since boot (user, nice, system, irq, softirq, steal)."""
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq + times.steal)


def _tree_cpu_s(root: int) -> dict[int, tuple[float, float]]:
    """CPU seconds of ``root`` and every live descendant, by pid: (user + system, and with the CPU of the
    process's children it has reaped)."""
    try:
        top = psutil.Process(root)
        tree = [top, *top.children(recursive=True)]
    except psutil.Error:
        return {}
    seconds = {}
    for process in tree:
        try:
            times = process.cpu_times()
        except psutil.Error:  # exited since the listing
            continue
        own = times.user + times.system
        seconds[process.pid] = (own, own + times.children_user + times.children_system)
    return seconds
