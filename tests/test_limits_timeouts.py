"""Slow request headers and bodies are cut off; normal requests and WebSockets are not.

The first test runs the real ``python -m server`` with its default timeouts (10 s): raw
sockets drip a request one byte a second and must be cut off within about 10 s (asserted
as < 20 s), while a normal request and an open WebSocket keep working. The others run
in-process with short timeouts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson

from server.app import create_app
from server.guard import http_protocol
from server.settings import Settings
from tests.support.app import PRODUCER_KEY, SECRET, make_settings, serve, token, uvicorn_serving
from tests.support.client import FeedClient
from tests.support.processes import free_port
from tests.support.server_proc import ServerProcess
from tests.support.tasks import task_body

CUT_OFF_S = 20.0  # "within about 10 s"


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (a reset after it closed, caused by
    bytes we still sent, ends the reading but keeps what arrived before)."""
    answer = b""
    with contextlib.suppress(OSError):
        while chunk := await reader.read(65536):
            answer += chunk
    return answer


class Drip:
    """A raw connection that sends ``head`` at once, then ``drip`` one byte at a time,
    and reads whatever the server answers until it closes the connection."""

    def __init__(self, port: int, head: bytes, drip: bytes, interval_s: float = 1.0) -> None:
        self.port = port
        self.head = head
        self.drip = drip
        self.interval_s = interval_s
        self.sent = 0

    async def run(self, limit_s: float = 40.0) -> tuple[float, bytes]:
        """Seconds until the server closed the connection, and what it answered."""
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        began = loop.time()
        sender = asyncio.create_task(self.send_to(writer))
        try:
            answer = await asyncio.wait_for(read_all(reader), limit_s)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return loop.time() - began, answer

    async def send_to(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            if self.head:
                writer.write(self.head)
                await writer.drain()
            for byte in self.drip:
                writer.write(bytes([byte]))
                await writer.drain()
                self.sent += 1
                await asyncio.sleep(self.interval_s)


def slow_headers(port: int) -> Drip:
    request = b"GET /api/v1/me/counter HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100
    return Drip(port, b"", request)


def slow_body(port: int, path: bytes = b"/api/v1/tasks", method: bytes = b"POST") -> Drip:
    head = (
        method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + PRODUCER_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
    )
    return Drip(port, head, b" " * 200)


def assert_408(answer: bytes) -> None:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer
    assert b"connection: close" in head.lower(), answer
    error = orjson.loads(body)["error"]
    assert error["code"] == "request_timeout" and error["message"], error
    assert b"Traceback" not in answer


async def test_the_real_server_cuts_dripped_headers_and_bodies_but_not_sockets(
    tmp_path: Path,
) -> None:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/t.db",
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
    }
    server = ServerProcess(env)
    await asyncio.to_thread(server.start)
    try:
        headers = {"Authorization": f"Bearer {PRODUCER_KEY}"}
        async with (
            httpx.AsyncClient(base_url=server.base_url, headers=headers) as producer,
            FeedClient(server.ws_url, token("alice")) as feed,
        ):
            assert (await feed.connect())["type"] == "snapshot"
            port = server.port
            unread = slow_body(port, b"/healthz", b"GET")  # answered without reading it
            drips = [slow_headers(port), slow_body(port), unread, Drip(port, b"", b"")]
            cut = asyncio.gather(*(d.run() for d in drips))
            # Meanwhile a normal request works, and its event reaches the socket.
            created = await producer.post("/api/v1/tasks", json=task_body("t-1"))
            assert created.status_code == 201, created.text
            await feed.until_seq(1)
            (h_s, h_answer), (b_s, b_answer), (u_s, u_answer), (i_s, i_answer) = await cut
            # The socket opened before the drips is still served after they were cut.
            await feed.send({"type": "ping"})
            assert (await feed.recv())["type"] == "pong"
            assert (await producer.post("/api/v1/tasks/t-1/complete")).status_code == 200
            await feed.until_seq(2)
    finally:
        await asyncio.to_thread(server.stop)
    assert h_s < CUT_OFF_S and drips[0].sent < CUT_OFF_S
    assert_408(h_answer)
    assert b_s < CUT_OFF_S
    assert_408(b_answer)
    assert u_s < CUT_OFF_S and u_answer.startswith(b"HTTP/1.1 200"), u_answer
    assert i_s < CUT_OFF_S  # a connection that sends nothing at all
    assert_408(i_answer)
    assert "Traceback" not in server.log_text()


@contextlib.asynccontextmanager
async def serve_guarded(settings: Settings) -> AsyncIterator[int]:
    """The app under uvicorn with the guarded protocol, as ``python -m server`` runs it."""
    port = free_port()
    async with uvicorn_serving(
        create_app(settings),
        port,
        http=http_protocol(settings.header_timeout_s, settings.body_timeout_s),
        ws="websockets-sansio",
        ws_per_message_deflate=False,
    ):
        yield port


async def test_each_request_on_a_keep_alive_connection_gets_its_own_header_deadline(
    sqlite_url: str,
) -> None:
    settings = make_settings(sqlite_url, header_timeout_s=1.0, body_timeout_s=1.0)
    async with serve_guarded(settings) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            loop = asyncio.get_running_loop()
            began = loop.time()
            # Requests that arrive at once are served, however long the connection lives.
            for _ in range(3):
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                await writer.drain()
                status = await asyncio.wait_for(reader.readline(), 5)
                assert status.startswith(b"HTTP/1.1 200"), status
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                await asyncio.wait_for(reader.readuntil(b"}"), 5)
                await asyncio.sleep(0.6)
            assert loop.time() - began > 1.0  # longer than one header deadline in all
            # The next one is dripped: cut.
            drip = Drip(port, b"", b"GET /healthz HTTP/1.1\r\nX-Pad: " + b"a" * 40, 0.25)
            sender = asyncio.create_task(drip.send_to(writer))
            answer = await asyncio.wait_for(read_all(reader), 10)
            sender.cancel()
        finally:
            writer.close()
    assert_408(answer)


async def test_a_websocket_outlives_the_header_deadline(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, header_timeout_s=1.0, body_timeout_s=1.0)
    async with (
        serve_guarded(settings) as port,
        FeedClient(f"ws://127.0.0.1:{port}/ws", token("alice")) as feed,
    ):
        assert (await feed.connect())["type"] == "snapshot"
        await asyncio.sleep(2.5)
        await feed.send({"type": "ping"})
        assert (await feed.recv())["type"] == "pong"


async def test_a_slow_body_gets_408_json_from_the_asgi_guard(sqlite_url: str) -> None:
    # The in-process server of the other tests: uvicorn's own protocol, only the guard.
    async with serve(make_settings(sqlite_url, body_timeout_s=1.0)) as live:
        port = int(live.base_url.rsplit(":", 1)[1])
        elapsed, answer = await slow_body(port).run()
        async with live.producer() as p:
            fine = await p.post("/api/v1/tasks", json=task_body("t-1"))
    assert elapsed < CUT_OFF_S
    assert_408(answer)
    assert fine.status_code == 201
