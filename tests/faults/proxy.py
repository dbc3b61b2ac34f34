"""A TCP fault proxy for tests: sits between a client (a server under test) and a
service (Redis, PostgreSQL) on 127.0.0.1 and breaks the path on demand.

- ``cut()``: abort every open connection now (both sides see a reset); new ones pass.
- ``refuse()``: cut, and from now on close every new connection at once (a service that
  is down, seen through a load balancer that still accepts).
- ``blackhole()``: keep every connection open but forward nothing, either way, and
  accept new connections that never get an answer (a network partition). Bytes sent
  meanwhile are held, not lost, like TCP retransmissions: ``restore()`` delivers them.
- ``freeze()``: the same for the connections open now only; new ones pass (a peer that
  went silent on an old connection, e.g. a deaf pub/sub subscription).
- ``delay(seconds)``: forward every chunk ``seconds`` after it arrived, in order.
- ``restore()``: forward normally again.

The proxy runs its own event loop in a daemon thread, so it keeps forwarding while the
test's loop is blocked (a ``ServerProcess.start()`` waiting for migrations that go
through the proxy, say). Every control method is thread-safe and returns once the
change is in effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any, Self, TypeVar

from tests.support.processes import Managed

T = TypeVar("T")

CHUNK = 64 * 1024
QUEUED_CHUNKS = 64  # per direction: then the reader stops and TCP pushes back


class Mode(Enum):
    PASS = "pass"
    BLACKHOLE = "blackhole"
    REFUSE = "refuse"


@dataclass
class ProxyStats:
    accepted: int = 0
    refused: int = 0
    cut: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


def _ended_cleanly(task: asyncio.Task[bool]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None and task.result()


class _Link:
    """One proxied connection: two pumps (client→service, service→client)."""

    def __init__(self, proxy: FaultProxy, open_: bool) -> None:
        self.proxy = proxy
        self.open = asyncio.Event()  # set while this link may forward
        if open_:
            self.open.set()
        self.transports: list[asyncio.WriteTransport] = []
        self.tasks: list[asyncio.Task[bool]] = []

    def abort(self) -> None:
        for transport in self.transports:
            transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy(Managed):
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:upstream_port`` until told otherwise."""

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        self.stats = ProxyStats()
        self._mode = Mode.PASS
        self._delay = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Listen on a free port (``self.port``) and start forwarding."""
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._listen())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"fault-proxy:{self.upstream_port}")
        self._thread.daemon = True
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        """Cut everything and stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            self._abort_all()
            if self._server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.wait_closed(), 2)
            tasks = [t for link in list(self._links) for t in link.tasks]
            await asyncio.gather(*tasks, return_exceptions=True)

        self._call(shutdown)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    # ------------------------------------------------------------------ faults

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def connections(self) -> int:
        """Connections open through the proxy right now."""
        return len(self._links)

    def cut(self) -> None:
        """Abort every open connection; new ones are forwarded (unless refusing)."""

        async def do() -> None:
            self._abort_all()

        self._call(do)

    def refuse(self) -> None:
        """Cut, then close every new connection as soon as it is accepted."""

        async def do() -> None:
            self._mode = Mode.REFUSE
            self._abort_all()

        self._call(do)

    def blackhole(self) -> None:
        """Forward nothing, either way, on open and new connections, until ``restore``."""

        async def do() -> None:
            self._mode = Mode.BLACKHOLE
            for link in self._links:
                link.open.clear()

        self._call(do)

    def freeze(self) -> None:
        """Forward nothing on the connections open now, until ``restore``; new ones pass."""

        async def do() -> None:
            for link in self._links:
                link.open.clear()

        self._call(do)

    def delay(self, seconds: float) -> None:
        """Forward every chunk ``seconds`` after it arrived (0 for none)."""

        async def do() -> None:
            self._delay = seconds

        self._call(do)

    def restore(self) -> None:
        """Forward normally; bytes held by a black-hole are delivered now, in order."""

        async def do() -> None:
            self._mode = Mode.PASS
            self._delay = 0.0
            for link in self._links:
                link.open.set()

        self._call(do)

    # ------------------------------------------------------------------ internals

    def _call(self, fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the fault proxy is not running")
        return asyncio.run_coroutine_threadsafe(fn(), loop).result(10)

    def _abort_all(self) -> None:
        for link in list(self._links):
            self.stats.cut += 1
            link.abort()
        self._links.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._mode is Mode.REFUSE:
            self.stats.refused += 1
            writer.transport.abort()
            return
        self.stats.accepted += 1
        link = _Link(self, open_=self._mode is Mode.PASS)
        link.transports.append(writer.transport)
        self._links.add(link)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            self._links.discard(link)
            writer.transport.abort()
            return
        link.transports.append(up_writer.transport)
        if link not in self._links:  # cut while connecting upstream
            link.abort()
            return
        up = asyncio.create_task(self._pump(link, reader, up_writer, up=True))
        down = asyncio.create_task(self._pump(link, up_reader, writer, up=False))
        link.tasks += [up, down]
        try:
            done, pending = await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
            if pending and all(_ended_cleanly(t) for t in done):
                # A clean half-close: let the other direction finish what it has to say.
                await asyncio.wait(pending)
            if all(_ended_cleanly(t) for t in (up, down)):
                for w in (writer, up_writer):
                    w.close()
                return
        finally:
            self._links.discard(link)
        link.abort()

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        up: bool,
    ) -> bool:
        """Copy one direction, holding chunks while black-holed and delaying them.
        Returns True at a clean end of stream, False when a side broke."""
        loop = asyncio.get_running_loop()
        # (arrival time, chunk); b"" is the end of the stream, None a broken side.
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(QUEUED_CHUNKS)

        async def read() -> None:
            try:
                while data := await reader.read(CHUNK):
                    await queue.put((loop.time(), data))
            except OSError:
                await queue.put((loop.time(), None))
                return
            await queue.put((loop.time(), b""))

        reading = asyncio.create_task(read())
        try:
            while True:
                arrived, data = await queue.get()
                if data is None:
                    return False
                await link.open.wait()
                if self._delay > 0:
                    await asyncio.sleep(max(0.0, arrived + self._delay - loop.time()))
                    await link.open.wait()
                if not data:
                    writer.write_eof()
                    return True
                writer.write(data)
                await writer.drain()
                if up:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
        except OSError:
            return False
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reading
