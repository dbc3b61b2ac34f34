"""Real Redis and PostgreSQL servers for tests, on free ports, in temporary directories.

Lifecycle of a service: ``start()`` -> (``stop()`` | ``kill()``) -> ``start()`` ... ->
``close()``. ``stop`` and ``kill`` keep the port and the temporary directory so that a
test can restart the *same* server; ``close`` (and leaving the ``with`` block) stops it
and deletes the directory. Unclosed services are closed at interpreter exit, and no
child process survives them (see ``tests.support.processes``). The binaries come from
``scripts/ensure-system-deps``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from tests.support.processes import (
    ChildProcess,
    Managed,
    RunAs,
    ServiceError,
    free_port,
    port_is_open,
    track,
    untrack,
    wait_until,
)

__all__ = ["PostgresServer", "RedisCluster", "RedisServer", "ServiceError", "free_port"]


# --- Redis -----------------------------------------------------------------------------


def _redis_command(port: int, *args: str, timeout: float = 1.0) -> bytes:
    """Send one command and return the first reply line (enough for PING, FLUSHALL,
    and the first line of a bulk string such as ``CLUSTER INFO``'s)."""
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.rstrip(b"\r\n")


class RedisServer(Managed):
    """A private ``redis-server`` on 127.0.0.1, without persistence.

    ``start()`` (also implied by ``with``) returns once the server answers PING; it always
    reuses the same port, so clients configured with ``url`` reconnect after a restart.
    """

    def __init__(self, port: int | None = None, extra_args: Sequence[str] = ()) -> None:
        self.port = port if port is not None else free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra_args = list(extra_args)
        self._dir: Path | None = None
        self._child: ChildProcess | None = None
        self._resume_timer: threading.Timer | None = None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    @property
    def pid(self) -> int | None:
        return None if self._child is None else self._child.pid

    @property
    def log_path(self) -> Path | None:
        return None if self._dir is None else self._dir / "redis.log"

    def start(self, timeout: float = 10.0) -> Self:
        """Start (or restart) on ``port``. Raises ``ServiceError`` if it does not answer."""
        if self.running:
            return self
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server not found: run scripts/ensure-system-deps")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="taskbell-redis-"))
        track(self)
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        argv += ["--dir", str(self._dir), *self.extra_args]
        self._child = ChildProcess(argv, log_path=self._dir / "redis.log", cwd=self._dir)
        wait_until(self.ping, child=self._child, what="redis-server", timeout=timeout)
        return self

    def ping(self, timeout: float = 1.0) -> bool:
        """True when the server answers PING within ``timeout`` seconds."""
        try:
            return _redis_command(self.port, "PING", timeout=timeout) == b"+PONG"
        except OSError:
            return False

    def flushall(self) -> None:
        reply = _redis_command(self.port, "FLUSHALL")
        if reply != b"+OK":
            raise ServiceError(f"FLUSHALL answered {reply!r}")

    def suspend(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open but nothing is answered."""
        self._cancel_resume_timer()
        if self._child is not None:
            self._child.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo ``suspend`` (SIGCONT)."""
        self._cancel_resume_timer()
        if self._child is not None:
            self._child.send_signal(signal.SIGCONT)

    def pause(self, seconds: float) -> None:
        """Suspend now and resume after ``seconds`` in the background; returns at once."""
        self.suspend()
        self._resume_timer = threading.Timer(seconds, self.resume)
        self._resume_timer.daemon = True
        self._resume_timer.start()

    def _cancel_resume_timer(self) -> None:
        timer, self._resume_timer = self._resume_timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()

    def stop(self, timeout: float = 10.0) -> None:
        """Shut down gracefully (SIGTERM), SIGKILL after ``timeout``. Restartable."""
        self._cancel_resume_timer()
        if self._child is not None:
            self._child.stop(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Die at once (SIGKILL), like a crashed server. Restartable."""
        self._cancel_resume_timer()
        if self._child is not None:
            self._child.kill()

    def close(self) -> None:
        """Stop and delete the temporary directory."""
        self.stop()
        untrack(self)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class RedisCluster(Managed):
    """A private Redis Cluster: ``masters`` cluster-mode ``redis-server``s on free ports
    (and free cluster-bus ports), no replicas, joined by ``redis-cli --cluster create``.

    ``url`` is a plain ``redis://`` URL of the first node (the broker detects the
    cluster); ``cluster_url`` the explicit ``redis+cluster://`` one. A node killed and
    started again keeps its port and ``nodes.conf`` (its identity and slots), so it
    rejoins with the same slots; ``wait_ok`` waits for ``cluster_state:ok`` everywhere.
    """

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-node-timeout",
                    "2000",
                ]
            )
            for _ in range(masters)
        ]
        first = self.nodes[0].port
        self.url = f"redis://127.0.0.1:{first}"
        self.cluster_url = f"redis+cluster://127.0.0.1:{first}"
        self._created = False

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def start(self, timeout: float = 30.0) -> Self:
        for node in self.nodes:
            node.start()
        if not self._created:
            cli = shutil.which("redis-cli")
            if cli is None:
                raise ServiceError("redis-cli not found: run scripts/ensure-system-deps")
            argv = [cli, "--cluster", "create"]
            argv += [f"127.0.0.1:{port}" for port in self.ports]
            argv += ["--cluster-replicas", "0", "--cluster-yes"]
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ServiceError(f"redis-cli --cluster create failed:\n{result.stdout}")
            self._created = True
        self.wait_ok(timeout)
        return self

    def state_ok(self, node: RedisServer) -> bool:
        try:
            info = _redis_command(node.port, "CLUSTER", "INFO")
            info += b"\n" + _redis_command(node.port, "PING")
        except OSError:
            return False
        return b"cluster_state:ok" in info and info.endswith(b"+PONG")

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every node says ``cluster_state:ok``. Raises ``ServiceError``."""
        deadline = time.monotonic() + timeout
        while not all(self.state_ok(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise ServiceError(f"the cluster on {self.ports} is not ok after {timeout}s")
            time.sleep(0.1)

    def numpat(self) -> list[int]:
        """``PUBSUB NUMPAT`` of every node."""
        return [int(_redis_command(node.port, "PUBSUB", "NUMPAT")[1:]) for node in self.nodes]

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        self._created = False


# --- PostgreSQL ------------------------------------------------------------------------

_PG_USER_FALLBACK = "taskbell-pg"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _version_key(bin_dir: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin
    version = Path(bin_dir).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version))


def find_postgres_bin_dir() -> Path:
    """The directory holding ``initdb``, ``postgres`` and ``psql``.

    ``initdb`` on PATH wins; otherwise the newest ``/usr/lib/postgresql/*/bin`` (Debian
    keeps the server binaries off PATH). Raises ``ServiceError`` when there is none.
    """
    candidates: list[str] = []
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    found = [os.path.dirname(p) for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    candidates += sorted(found, key=_version_key, reverse=True)
    for candidate in candidates:
        bin_dir = Path(candidate)
        if all(os.access(bin_dir / name, os.X_OK) for name in ("initdb", "postgres", "psql")):
            return bin_dir
    raise ServiceError(
        "PostgreSQL server binaries (initdb, postgres, psql) not found: "
        "run scripts/ensure-system-deps"
    )


def postgres_run_as() -> RunAs | None:
    """The account to run PostgreSQL as: None unless we are root.

    As root: Debian's ``postgres`` account if present, else a system account
    ``taskbell-pg`` created on first use.
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _PG_USER_FALLBACK):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return RunAs(name, entry.pw_uid, entry.pw_gid)
    # A concurrent run may create it first: then useradd fails and the lookup succeeds.
    useradd = ["useradd", "--system", "--user-group", "--no-create-home"]
    useradd += ["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", _PG_USER_FALLBACK]
    subprocess.run(useradd, capture_output=True, check=False)
    try:
        entry = pwd.getpwnam(_PG_USER_FALLBACK)
    except KeyError:
        raise ServiceError(f"could not create the system user {_PG_USER_FALLBACK}") from None
    return RunAs(_PG_USER_FALLBACK, entry.pw_uid, entry.pw_gid)


class PostgresServer(Managed):
    """A private PostgreSQL cluster on 127.0.0.1 with trust auth, tuned for speed.

    The cluster is created (``initdb``) on the first ``start()``; restarts reuse its data
    directory and port. ``url`` points at the database ``taskbell``, created at first start.
    Durability is off (fsync, synchronous_commit, full_page_writes), so a ``kill()``
    may lose the last commits: fine for tests, never for production.
    """

    superuser = "postgres"
    database = "taskbell"

    def __init__(self, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.url = self.url_for(self.database)
        self.dsn = self.dsn_for(self.database)
        self._bin_dir: Path | None = None
        self._dir: Path | None = None
        self._child: ChildProcess | None = None
        self._created = False

    def url_for(self, database: str) -> str:
        """SQLAlchemy async URL (``postgresql+asyncpg://``) of ``database`` here."""
        return f"postgresql+asyncpg://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def dsn_for(self, database: str) -> str:
        """libpq/asyncpg DSN (``postgresql://``) of ``database`` here."""
        return f"postgresql://{self.superuser}@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    @property
    def pid(self) -> int | None:
        return None if self._child is None else self._child.pid

    @property
    def log_path(self) -> Path | None:
        return None if self._dir is None else self._dir / "postgres.log"

    def start(self, timeout: float = 30.0) -> Self:
        """Start (initdb first time), wait until it accepts queries. Raises ``ServiceError``."""
        if self.running:
            return self
        if self._bin_dir is None:
            self._bin_dir = find_postgres_bin_dir()
        run_as = postgres_run_as()
        if self._dir is None:
            # /tmp explicitly: a $TMPDIR under /root would not be reachable by `postgres`.
            self._dir = Path(
                tempfile.mkdtemp(prefix="taskbell-pg-", dir="/tmp" if run_as else None)
            )
            (self._dir / "sock").mkdir()
            if run_as is not None:
                for path in (self._dir, self._dir / "sock"):
                    os.chown(path, run_as.uid, run_as.gid)
        track(self)
        if not (self._dir / "data" / "PG_VERSION").exists():
            self._initdb(run_as)
        argv = [str(self._bin_dir / "postgres"), "-D", str(self._dir / "data")]
        argv += ["-p", str(self.port), "-k", str(self._dir / "sock")]
        for setting in (
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=200",
        ):
            argv += ["-c", setting]
        self._child = ChildProcess(
            argv, log_path=self._dir / "postgres.log", cwd=self._dir, run_as=run_as
        )
        wait_until(self._accepts_queries, child=self._child, what="postgres", timeout=timeout)
        if not self._created:
            self.create_database(self.database)
            self._created = True
        return self

    def _initdb(self, run_as: RunAs | None) -> None:
        assert self._bin_dir is not None and self._dir is not None
        argv = [str(self._bin_dir / "initdb"), "-D", str(self._dir / "data")]
        argv += ["--auth=trust", "-U", self.superuser, "--encoding=UTF8", "--no-locale"]
        argv += ["--no-sync"]
        result = subprocess.run(
            argv,
            cwd=self._dir,
            capture_output=True,
            text=True,
            check=False,
            user=None if run_as is None else run_as.uid,
            group=None if run_as is None else run_as.gid,
            extra_groups=None if run_as is None else [],
        )
        if result.returncode != 0:
            raise ServiceError(
                f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` through ``psql`` and return its unaligned output. Raises on error."""
        assert self._bin_dir is not None
        argv = [str(self._bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", "127.0.0.1", "-p", str(self.port), "-U", self.superuser, "-d", database]
        argv += ["-c", sql]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGCONNECT_TIMEOUT"] = "3"
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise ServiceError(f"psql failed ({result.returncode}) on {sql!r}: {result.stderr}")
        return result.stdout

    def _accepts_queries(self) -> bool:
        if not port_is_open(self.port):
            return False
        try:
            return self.psql("SELECT 1").strip() == "1"
        except ServiceError:
            return False  # e.g. "the database system is starting up"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a fresh name when None) and return its async URL."""
        name = name if name is not None else f"test_{uuid.uuid4().hex[:16]}"
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"not a plain lower-case identifier: {name!r}")
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting its sessions first."""
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"not a plain lower-case identifier: {name!r}")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, timeout: float = 10.0) -> None:
        """Fast shutdown, SIGKILL after ``timeout``. Restartable; committed data is kept.

        SIGINT, not SIGTERM: PostgreSQL's "smart" SIGTERM shutdown would wait for every
        client (a server under test, a leaked pool) to disconnect first.
        """
        if self._child is not None:
            self._child.stop(signal.SIGINT, timeout)

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, like a crash. Restartable."""
        if self._child is not None:
            self._child.kill()

    def close(self) -> None:
        """Stop and delete the cluster's directory."""
        self.stop()
        untrack(self)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._created = False
