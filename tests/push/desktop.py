"""A real session D-Bus (``dbus-daemon --session``) and a small
org.freedesktop.Notifications service on it that records Notify and CloseNotification,
for testing the desktop bridge.

(No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus signatures
from the method annotations.)"""

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from dbus_fast import BusType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusInt32, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.service import ServiceInterface, method, signal

from tests.support.processes import ChildProcess, ServiceError, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SessionBus:
    """``dbus-daemon --session`` on a private socket; ``address`` is its bus address."""

    dir: Path
    child: ChildProcess

    @property
    def address(self) -> str:
        return f"unix:path={self.dir / 'bus'}"


@contextlib.contextmanager
def session_bus() -> Iterator[SessionBus]:
    binary = shutil.which("dbus-daemon")
    if binary is None:
        raise ServiceError("dbus-daemon not found: run scripts/ensure-system-deps")
    tmp = Path(tempfile.mkdtemp(prefix="taskbell-dbus-"))
    argv = [binary, "--session", "--nofork", "--nopidfile", f"--address=unix:path={tmp / 'bus'}"]
    child = ChildProcess(argv, log_path=tmp / "dbus.log", cwd=tmp)
    try:
        wait_until(lambda: (tmp / "bus").exists(), child=child, what="dbus-daemon", timeout=10)
        yield SessionBus(tmp, child)
    finally:
        child.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class Notified:
    id: int
    replaces_id: int
    summary: str
    body: str
    actions: list[str]


class Notifications(ServiceInterface):
    """What a desktop's notification daemon does, minus the drawing."""

    def __init__(self) -> None:
        super().__init__("org.freedesktop.Notifications")
        self.notified: list[Notified] = []
        self.closed: list[int] = []
        self.open: dict[int, Notified] = {}
        self._next = 0
        self.changed = asyncio.Event()

    @method()
    def Notify(
        self,
        app_name: DBusStr,
        replaces_id: DBusUInt32,
        app_icon: DBusStr,
        summary: DBusStr,
        body: DBusStr,
        actions: Annotated[list[str], DBusSignature("as")],
        hints: Annotated[dict[str, Variant], DBusSignature("a{sv}")],
        expire_timeout: DBusInt32,
    ) -> DBusUInt32:
        if replaces_id and replaces_id in self.open:
            nid = replaces_id
        else:
            self._next += 1
            nid = self._next
        note = Notified(nid, replaces_id, summary, body, list(actions))
        self.notified.append(note)
        self.open[nid] = note
        self.changed.set()
        return nid

    @method()
    def CloseNotification(self, id: DBusUInt32) -> None:
        self.closed.append(id)
        if self.open.pop(id, None) is not None:
            self.NotificationClosed(id, 3)
        self.changed.set()

    @method()
    def GetCapabilities(self) -> Annotated[list[str], DBusSignature("as")]:
        return ["actions", "body"]

    @method()
    def GetServerInformation(
        self,
    ) -> Annotated[list[str], DBusSignature("ssss")]:
        return ["taskbell-test", "taskbell", "1", "1.2"]

    @signal()
    def NotificationClosed(
        self,
        id: DBusUInt32,
        reason: DBusUInt32,
    ) -> Annotated[list[int], DBusSignature("uu")]:
        return [id, reason]

    @signal()
    def ActionInvoked(
        self,
        id: DBusUInt32,
        action: DBusStr,
    ) -> Annotated[list[Any], DBusSignature("us")]:
        return [id, action]

    def click(self, nid: int) -> None:
        """What a person clicking the notification's body makes the daemon send."""
        self.ActionInvoked(nid, "default")

    async def wait(self, done: Any, timeout: float = 15.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"notifications: {self.notified}, closed: {self.closed}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.2))


@contextlib.asynccontextmanager
async def notification_service(bus: SessionBus) -> AsyncIterator[Notifications]:
    conn = await MessageBus(bus_address=bus.address, bus_type=BusType.SESSION).connect()
    service = Notifications()
    conn.export("/org/freedesktop/Notifications", service)
    await conn.request_name("org.freedesktop.Notifications")
    try:
        yield service
    finally:
        conn.disconnect()


class BridgeProcess:
    """``python -m bridge`` as a child process on the test's session bus."""

    def __init__(
        self,
        bus: SessionBus,
        url: str,
        token: str,
        state: Path,
        opened: Path,
        *,
        handoff_s: float = 1.0,
    ) -> None:
        """``handoff_s``: how long a completed step's notification waits for the next
        step (short, so that tests which complete a task do not wait ten seconds)."""
        self.bus = bus
        self.argv = [sys.executable, "-m", "bridge", "--url", url, "--token", token]
        self.argv += ["--state", str(state), "--max-backoff", "0.5", "--log-level", "debug"]
        self.argv += ["--handoff-seconds", str(handoff_s)]
        self.state = state
        self.opened = opened
        self.log = state.parent / "bridge.log"
        state.parent.mkdir(parents=True, exist_ok=True)
        self.child: ChildProcess | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["DBUS_SESSION_BUS_ADDRESS"] = self.bus.address
        # The "browser" a click opens: appends the URL to a file.
        env["BROWSER"] = (
            f"{sys.executable} -c "
            f"\"import sys; open({str(self.opened)!r}, 'a').write(sys.argv[1] + chr(10))\" %s"
        )
        self.child = ChildProcess(self.argv, log_path=self.log, cwd=REPO_ROOT, env=env)

    async def stop(self) -> None:
        """SIGTERM, and wait in a thread: the server under test may share this loop."""
        if self.child is not None:
            await asyncio.to_thread(self.child.stop)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""
