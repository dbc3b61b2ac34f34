"""Child processes that never outlive the tests: process groups, logs, exit cleanup.

Every child runs in its own session and process group, so stopping it also stops what
it forked. Owners register with ``track`` and are closed at interpreter exit
(``atexit``) even when a test crashes. When ``setpriv --pdeathsig`` is available and
the child is started from the main thread, the kernel also kills the child if the test
process dies without running ``atexit`` (SIGKILL, OOM killer).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self


class Managed(ABC):
    """Something a test starts and must not leave behind: ``with x:`` starts it and
    closes it (stop, and delete what it made) on the way out."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ServiceError(RuntimeError):
    """A service binary is missing, or a service did not start or answer in time."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_open(port: int, timeout: float = 0.2) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class _Closeable(Protocol):
    def close(self) -> None: ...


_open_services: set[_Closeable] = set()
_open_lock = threading.Lock()


def track(service: _Closeable) -> None:
    """Close ``service`` at interpreter exit unless it was closed before (see ``untrack``)."""
    with _open_lock:
        _open_services.add(service)


def untrack(service: _Closeable) -> None:
    with _open_lock:
        _open_services.discard(service)


@atexit.register
def _close_all() -> None:
    with _open_lock:
        services = list(_open_services)
    for service in services:
        with contextlib.suppress(Exception):
            service.close()


@dataclass(frozen=True)
class RunAs:
    """An unprivileged account to run a child as (PostgreSQL refuses to run as root)."""

    name: str
    uid: int
    gid: int


def _pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL --`` when usable here, else nothing.

    The kernel sends the signal when the *thread* that forked the child exits, so it is
    only safe from the main thread, whose end is the end of the test process.
    """
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None or not _setpriv_has_pdeathsig(setpriv):
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


_setpriv_checked: dict[str, bool] = {}


def _setpriv_has_pdeathsig(setpriv: str) -> bool:
    if setpriv not in _setpriv_checked:
        help_text = subprocess.run(
            [setpriv, "--help"], capture_output=True, text=True, check=False
        ).stdout
        _setpriv_checked[setpriv] = "--pdeathsig" in help_text
    return _setpriv_checked[setpriv]


class ChildProcess:
    """One started child: its own process group, output appended to ``log_path``."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        run_as: RunAs | None = None,
    ) -> None:
        self.log_path = log_path
        self._group_killed = False
        with log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                [*_pdeathsig_prefix(), *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=None if env is None else dict(env),
                start_new_session=True,
                user=None if run_as is None else run_as.uid,
                group=None if run_as is None else run_as.gid,
                extra_groups=None if run_as is None else [],
            )

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once exited (negative: killed by that signal), else None."""
        return self._popen.poll()

    @property
    def running(self) -> bool:
        return self._popen.poll() is None

    def send_signal(self, sig: int) -> None:
        """Signal the child itself (not its group); a no-op once it has exited."""
        if self._popen.poll() is None:
            self._popen.send_signal(sig)

    def kill_group(self) -> None:
        """SIGKILL everything left in the child's process group (once: after that the
        group id may be reused by an unrelated process)."""
        if self._group_killed:
            return
        self._group_killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` to the child, wait up to ``timeout``, then SIGKILL the group.

        Whatever happens, nothing of the group is left running afterwards. Returns the
        exit status.
        """
        if self._popen.poll() is None:
            self._popen.send_signal(sig)
            # A suspended child only acts on the signal once continued.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._popen.pid, signal.SIGCONT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout)
        return self.kill()

    def kill(self) -> int:
        """SIGKILL the whole group at once and reap the child. Returns the exit status."""
        self.kill_group()
        return self._popen.wait()


def tail(path: Path, chars: int = 4000) -> str:
    """The end of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return text[-chars:]


def wait_until(
    ready: Callable[[], bool], *, child: ChildProcess, what: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not child.running:
            raise ServiceError(
                f"{what} exited with status {child.returncode} while starting; "
                f"log {child.log_path}:\n{tail(child.log_path)}"
            )
        if time.monotonic() > deadline:
            child.kill()
            raise ServiceError(
                f"{what} did not become ready within {timeout}s; "
                f"log {child.log_path}:\n{tail(child.log_path)}"
            )
        time.sleep(0.05)
