"""A real Taskbell server (``python -m server``) as a child process on a free port.

The child gets a clean environment: the test process's own ``HOST``, ``PORT``,
``DATABASE_URL``, ``REDIS_URL``, ``LOG_LEVEL`` and ``TASKBELL_*`` are dropped, so only
what the test passes in ``env`` configures the server. Output goes to a log file that
survives restarts (``log_text()``); ``start``/``wait_ready`` failures quote it.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from tests.support.processes import (
    ChildProcess,
    Managed,
    ServiceError,
    free_port,
    tail,
    track,
    untrack,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

_INHERITED_CONFIG = {"HOST", "PORT", "DATABASE_URL", "REDIS_URL", "LOG_LEVEL"}

# No proxies, even if the environment names one: the server is on 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status code of ``GET url``, or None when nothing answered."""
    try:
        with _opener.open(url, timeout=timeout) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, urllib.error.URLError):
        return None


class ServerProcess(Managed):
    """``python -m server`` from the repository root with ``HOST=127.0.0.1`` and a port of
    its own, kept across restarts.

    ``start()`` returns once ``GET /healthz`` answers 200; ``wait_ready()`` waits for
    ``/readyz``. Both raise ``ServiceError`` (with the log tail) on timeout or early exit.
    """

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.port = port if port is not None else free_port()
        self.env = dict(env or {})
        self.args = args
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self._dir = Path(tempfile.mkdtemp(prefix="taskbell-server-"))
        self.log_path = self._dir / "server.log"
        self._child: ChildProcess | None = None
        self._starts = 0

    @property
    def pid(self) -> int:
        """PID of the running (or last) server process. Raises if never started."""
        if self._child is None:
            raise ServiceError("the server was never started")
        return self._child.pid

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    @property
    def returncode(self) -> int | None:
        """Exit status of the last process once it exited (negative: by that signal)."""
        return None if self._child is None else self._child.returncode

    def child_env(self) -> dict[str, str]:
        """The exact environment the server process gets."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in _INHERITED_CONFIG and not key.startswith("TASKBELL_")
        }
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.env)
        env["HOST"] = "127.0.0.1"
        env["PORT"] = str(self.port)
        return env

    def log_text(self) -> str:
        """Everything the server wrote to stdout and stderr, across restarts."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 20.0) -> Self:
        """Start the server and wait until ``/healthz`` answers 200."""
        if self.running:
            return self
        self._starts += 1
        with self.log_path.open("a") as log:
            log.write(f"--- start #{self._starts} on port {self.port} ---\n")
        track(self)
        self._child = ChildProcess(
            [sys.executable, "-m", "server", *self.args],
            log_path=self.log_path,
            cwd=REPO_ROOT,
            env=self.child_env(),
        )
        self._wait_for("/healthz", timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until ``/readyz`` answers 200 (store and broker reachable)."""
        self._wait_for("/readyz", timeout)

    def _wait_for(self, path: str, timeout: float) -> None:
        child = self._child
        if child is None:
            raise ServiceError("the server was never started")
        deadline = time.monotonic() + timeout
        last: int | None = None
        while True:
            last = http_status(self.base_url + path, timeout=1.0)
            if last == 200:
                return
            if not child.running:
                raise ServiceError(
                    f"server exited with status {child.returncode} before {path} answered 200;"
                    f" log {self.log_path}:\n{tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{path} did not answer 200 within {timeout}s (last: {last});"
                    f" log {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful shutdown), SIGKILL after ``timeout``. Returns the exit status."""
        if self._child is None:
            return None
        return self._child.stop(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL the server and anything it forked, like a crash. Returns the exit status."""
        if self._child is None:
            return None
        return self._child.kill()

    def restart(self, timeout: float = 20.0) -> Self:
        """``stop()`` then ``start()`` on the same port."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop and delete the log directory."""
        self.stop()
        untrack(self)
        shutil.rmtree(self._dir, ignore_errors=True)
