"""CPU and memory readings: the load generator's, the server's and the machine's."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import psutil


class CpuMeter:
    """CPU time of a process (and its children) as a share of one core over wall time."""

    def __init__(self, process: psutil.Process | None) -> None:
        self._process = process
        self._cpu = 0.0
        self._wall = 0.0

    def start(self) -> None:
        self._cpu, self._wall = self._used(), time.monotonic()

    def percent(self) -> float:
        wall = time.monotonic() - self._wall
        if self._process is None or wall <= 0:
            return float("nan")
        return self.seconds() / wall * 100

    def seconds(self) -> float:
        """CPU seconds used since start()."""
        if self._process is None:
            return float("nan")
        return self._used() - self._cpu

    def _used(self) -> float:
        if self._process is None:
            return 0.0
        total = 0.0
        for proc in _family(self._process):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total


class MachineMeter:
    """Busy share of every core, to see load from processes other than ours."""

    def __init__(self) -> None:
        self._busy: list[float] = []
        self._total: list[float] = []

    def start(self) -> None:
        self._busy, self._total = self._sample()

    def busy_pct(self) -> list[float]:
        busy, total = self._sample()
        return [
            (b - b0) / (t - t0) * 100 if t > t0 else float("nan")
            for b, b0, t, t0 in zip(busy, self._busy, total, self._total, strict=True)
        ]

    @staticmethod
    def _sample() -> tuple[list[float], list[float]]:
        busy: list[float] = []
        total: list[float] = []
        for core in psutil.cpu_times(percpu=True):
            idle = core.idle + getattr(core, "iowait", 0.0)
            all_time = sum(core)
            busy.append(all_time - idle)
            total.append(all_time)
        return busy, total


@dataclass(frozen=True, slots=True)
class CpuReading:
    loadgen_pct: float
    server_pct: float
    server_cpu_s: float
    cores_pct: list[float]

    @property
    def others_pct(self) -> float:
        """CPU used by neither the server nor the load generator (100 = one core)."""
        return sum(self.cores_pct) - self.loadgen_pct - _zero_nan(self.server_pct)

    def cores_text(self) -> str:
        return " ".join(f"core{i} {pct:.0f}%" for i, pct in enumerate(self.cores_pct))


def _zero_nan(value: float) -> float:
    return 0.0 if value != value else value


class Meters:
    """The load generator's, the server's and the machine's CPU over one phase."""

    def __init__(self, server: psutil.Process | None) -> None:
        self._me = CpuMeter(psutil.Process())
        self._server = CpuMeter(server)
        self._machine = MachineMeter()

    def start(self) -> None:
        self._me.start()
        self._server.start()
        self._machine.start()

    def read(self) -> CpuReading:
        return CpuReading(
            self._me.percent(),
            self._server.percent(),
            self._server.seconds(),
            self._machine.busy_pct(),
        )


def _family(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.Error:
        return [process]


def rss_kb(process: psutil.Process | None) -> float:
    if process is None:
        return float("nan")
    total = 0
    for proc in _family(process):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total / 1024
