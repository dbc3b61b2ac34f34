"""Idle sockets: how much server memory many connected, authenticated, quiet sockets take.

    python -m bench.idle --sizes 5000,10000,19000

For each size it starts a fresh ``python -m server`` (SQLite, in-process broker; pinned
to core 0, this client to core 1), opens that many sockets over ``size / 5`` owners
(auth, then the snapshot), waits until every socket has its snapshot, lets the server
settle, and reads the server's RSS: before the first socket, with all of them open, and
after ``--hold`` seconds of idling (the heartbeat and keepalive pings run meanwhile; the
client answers protocol pings). Per-socket memory is the growth divided by the count;
the last table fits RSS = base + k * sockets over the sizes (least squares), so a size
the machine cannot reach (50,000 sockets need 50,000 descriptors on each side; the limit
here may be lower: ``ulimit -Hn``) is an extrapolation, printed as one.

The client is a bare asyncio protocol (a handshake, one masked auth frame, pongs), not
the ``websockets`` library: a client socket costs well under 1 KB, so 20,000 of them fit
beside the server on a small machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil

from bench.loadgen import mint_token
from bench.meters import rss_kb
from bench.serverproc import LOADGEN_CORE, Server

SOCKETS_PER_OWNER = 5


def _masked(opcode: int, payload: bytes) -> bytes:
    """One client frame (clients must mask; RFC 6455 5.3)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    return head + mask + body


class IdleClient(asyncio.Protocol):
    """Handshake, auth, wait for the snapshot, then answer pings and read the rest."""

    __slots__ = ("_auth", "_buf", "_host", "_upgraded", "closed", "ready", "transport")

    def __init__(self, host: str, token: str, ready: asyncio.Future[None]) -> None:
        self._host = host
        self._auth = _masked(0x1, orjson.dumps({"type": "auth", "token": token}))
        self._buf = b""
        self._upgraded = False
        self.ready = ready
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET /ws HTTP/1.1\r\nHost: {self._host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self._fail(f"handshake refused: {buf[:40]!r}")
                return
            self._upgraded = True
            buf = buf[end + 4 :]
            assert self.transport is not None
            self.transport.write(self._auth)
        while len(buf) >= 2:
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
            at = 2
            if n == 126:
                if len(buf) < 4:
                    break
                (n,) = struct.unpack_from("!H", buf, 2)
                at = 4
            elif n == 127:
                if len(buf) < 10:
                    break
                (n,) = struct.unpack_from("!Q", buf, 2)
                at = 10
            if len(buf) < at + n:
                break
            payload, buf = buf[at : at + n], buf[at + n :]
            if opcode == 0x9 and self.transport is not None:  # ping
                self.transport.write(_masked(0xA, payload))
            elif opcode == 0x8:  # close
                self._fail(f"closed by the server: {payload[:2].hex()} {payload[2:]!r}")
                return
            elif (
                opcode == 0x1
                and not self.ready.done()
                and orjson.loads(payload).get("type") in ("snapshot", "synced")
            ):
                self.ready.set_result(None)
        self._buf = buf

    def _fail(self, why: str) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"connection lost: {exc}"))


async def open_sockets(
    host: str, port: int, secret: str, n: int, in_flight: int
) -> tuple[list[IdleClient], float]:
    loop = asyncio.get_running_loop()
    owners = max(1, n // SOCKETS_PER_OWNER)
    tokens = [mint_token(secret, f"idle-u{i}") for i in range(owners)]
    gate = asyncio.Semaphore(in_flight)
    clients: list[IdleClient] = []

    async def one(i: int) -> None:
        async with gate:
            ready: asyncio.Future[None] = loop.create_future()
            _, client = await loop.create_connection(
                lambda: IdleClient(host, tokens[i % owners], ready), host, port
            )
            clients.append(client)
            await asyncio.wait_for(ready, 60)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return clients, time.perf_counter() - started


def measure(size: int, hold_s: float, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="taskbell-idle-") as tmp:
        server = Server(Path(tmp), args, pin=True)
        try:
            server.wait_healthy()
            proc = psutil.Process(server.process.pid)
            time.sleep(1.0)
            before = rss_kb(proc)

            async def run() -> dict[str, float]:
                clients, took = await open_sockets(
                    "127.0.0.1", server.port, server.secret, size, args.in_flight
                )
                await asyncio.sleep(2.0)
                connected = rss_kb(proc)
                await asyncio.sleep(hold_s)
                held = rss_kb(proc)
                alive = sum(not c.closed for c in clients)
                for c in clients:
                    if c.transport is not None:
                        c.transport.close()
                return {"took_s": took, "connected": connected, "held": held, "alive": alive}

            out = asyncio.run(run())
            out.update(size=size, before=before)
            return out
        finally:
            server.stop()


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line y = a + b x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - b * mx, b


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="5000,10000,19000", help="socket counts, one run each")
    p.add_argument("--hold", type=float, default=30.0, help="seconds idle before the last read")
    p.add_argument("--in-flight", type=int, default=200, help="handshakes in flight")
    p.add_argument("--extrapolate", type=int, default=50_000, help="size to extrapolate to")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--server-cmd", default="", help="start something else than python -m server")
    p.add_argument("--postgres", default="")
    p.add_argument("--redis", default="")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if max(sizes) + 100 > hard:
        print(f"the descriptor limit is {hard}: sizes above ~{hard - 100} cannot be opened")
        return 2
    os.sched_setaffinity(0, {int(LOADGEN_CORE)})
    rows = []
    for size in sizes:
        r = measure(size, args.hold, args)
        rows.append(r)
        print(
            f"{size:>6} sockets: opened in {r['took_s']:.1f} s ({size / r['took_s']:,.0f}/s), "
            f"{int(r['alive']):,} still open after {args.hold:.0f} s; server RSS "
            f"{r['before'] / 1024:.1f} MB before, {r['connected'] / 1024:.1f} MB connected, "
            f"{r['held'] / 1024:.1f} MB held = "
            f"{(r['held'] - r['before']) / size:.2f} KB per socket",
            flush=True,
        )
    if len(rows) >= 2:
        base, per = fit([(r["size"], r["held"]) for r in rows])
        at = args.extrapolate
        print(
            f"fit over {len(rows)} sizes: RSS = {base / 1024:.1f} MB + {per:.2f} KB x sockets; "
            f"{at:,} sockets -> {(base + per * at) / 1024 / 1024:.2f} GB (extrapolated)"
        )
    return 0 if all(r["alive"] == r["size"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
