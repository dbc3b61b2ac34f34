"""Faults of a client are not server errors in the log: a WebSocket text frame that is
not UTF-8 is one INFO line without a traceback (the client gets 1007)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError

from tests.support.app import PRODUCER_KEY, SECRET, token
from tests.support.server_proc import ServerProcess


async def test_a_text_frame_that_is_not_utf8_is_logged_at_info(tmp_path: Path) -> None:
    env = {
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/t.db",
    }
    server = ServerProcess(env)
    closed: int | None = None
    await asyncio.to_thread(server.start)
    try:
        async with connect(server.ws_url) as ws:
            await ws.send(orjson.dumps({"type": "auth", "token": token("alice")}).decode())
            await ws.recv()
            await ws.send(b'{"type": "ping\xff"}', text=True)
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except ConnectionClosedError as exc:
                closed = exc.rcvd.code if exc.rcvd else None
    finally:
        await asyncio.to_thread(server.stop)
    entries = [
        orjson.loads(line) for line in server.log_text().splitlines() if line.startswith("{")
    ]
    utf8 = [e for e in entries if "UTF-8" in e.get("msg", "")]
    assert closed == 1007
    assert utf8 and all(e["level"] == "info" and "exc" not in e for e in utf8), utf8
    assert not [e for e in entries if e["level"] in ("error", "critical")]
