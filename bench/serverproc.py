"""A server process under test, and an optional py-spy sampler attached to it."""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER_CORE, LOADGEN_CORE = "0", "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(core: str, argv: list[str], pin: bool) -> list[str]:
    return ["taskset", "-c", core, *argv] if pin else argv


class Server:
    """One ``python -m server`` process with its own temporary database."""

    def __init__(self, workdir: Path, args: argparse.Namespace, pin: bool) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(32)
        self.producer_key = secrets.token_urlsafe(24)
        self.log_path = workdir / "server.log"
        env = dict(os.environ)
        env.update(
            HOST="127.0.0.1",
            PORT=str(self.port),
            DATABASE_URL=args.postgres or f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
            TASKBELL_SECRET=self.secret,
            TASKBELL_PRODUCER_KEYS=self.producer_key,
            # Every simulated client connects from 127.0.0.1, 200 handshakes at a time.
            TASKBELL_MAX_PENDING_SOCKETS_PER_ADDRESS="0",
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        )
        env.pop("REDIS_URL", None)
        if args.redis:
            env["REDIS_URL"] = args.redis
        self._log = self.log_path.open("wb")
        command = shlex.split(args.server_cmd) if args.server_cmd else [args.python, "-m", "server"]
        argv = pinned(SERVER_CORE, command, pin)
        self.process = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_healthy(self, timeout_s: float = 60) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}\n{self.tail()}")
            try:
                with opener.open(f"{self.url}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not answer /healthz in {timeout_s} s\n{self.tail()}")

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def problems(self) -> list[str]:
        """Log lines that look like errors (tracebacks, ERROR level)."""
        text = self.log_path.read_text(errors="replace").splitlines()
        hits = [ln for ln in text if "Traceback" in ln or "ERROR" in ln or "Error:" in ln]
        return hits


def start_profiler(
    server: Server, workdir: Path, *, gil: bool = False
) -> subprocess.Popen[bytes] | None:
    """Sample the server with py-spy (if installed) for the whole load-generator run;
    ``gil``: only samples of the thread holding the GIL (Python at work, not waiting)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return None
    argv = [py_spy, "record", "--pid", str(server.process.pid), "--rate", "250"]
    argv += ["--gil"] if gil else []
    # Collapsed stacks (profile.txt) read with any flamegraph tool or `sort | head`.
    argv += ["--format", "raw", "--output", str(workdir / "profile.txt")]
    log = (workdir / "py-spy.log").open("wb")
    # Pinned beside the load generator so the sampler does not steal the server's core.
    return subprocess.Popen(pinned(LOADGEN_CORE, argv, True), stdout=log, stderr=log)


def stop_profiler(profiler: subprocess.Popen[bytes], workdir: Path) -> str:
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()
    out = workdir / "profile.txt"
    return f"server profile: {out}" if out.exists() else f"py-spy failed: {workdir}/py-spy.log"
