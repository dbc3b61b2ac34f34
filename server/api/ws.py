"""``/ws``: authenticate, snapshot or replay, then live events (docs/protocol.md).

Close codes: 4001 not authenticated or token expired, 4008 too slow (resume with
``since``), 1008 bad message, 1009 message too big, 1013 database unavailable (retry),
1012 server restarting.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.api.common import Parts
from server.auth import verify_token
from server.errors import ApiError, CloseCode, Unauthorized
from server.hub import Connection, ConnState
from server.settings import Settings
from server.wire import AuthMessage, PingMessage, ProtocolViolation, parse_client_message

log = logging.getLogger("taskbell.ws")

PONG = '{"type":"pong"}'


async def _receive(websocket: WebSocket, limit: int) -> str | bytes:
    """The next client frame; raises ``WebSocketDisconnect`` or ``ProtocolViolation``."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    data: str | bytes | None = message.get("text")
    if data is None:
        data = message.get("bytes") or b""
    if len(data) > limit:
        raise ProtocolViolation(CloseCode.TOO_BIG, f"message over {limit} bytes")
    return data


async def ws_endpoint(websocket: WebSocket) -> None:
    p: Parts = websocket.app.state.parts
    settings = p.settings
    limit = settings.max_ws_message_bytes
    await websocket.accept()
    try:
        raw = await asyncio.wait_for(_receive(websocket, limit), settings.auth_timeout_s)
        first = parse_client_message(raw)
        if not isinstance(first, AuthMessage):
            raise ProtocolViolation(CloseCode.NOT_AUTHENTICATED, "send an auth message first")
        who = verify_token(settings, first.token)
    except TimeoutError:
        await websocket.close(CloseCode.NOT_AUTHENTICATED, "no auth message in time")
        return
    except WebSocketDisconnect:
        return
    except ProtocolViolation as exc:
        await websocket.close(exc.code, exc.reason)
        return
    except Unauthorized as exc:
        await websocket.close(CloseCode.NOT_AUTHENTICATED, exc.code)
        return

    conn = Connection(websocket, who.id, settings.send_queue_size)
    expiry = _Expiry(conn)
    expiry.arm(who.expires_at)
    try:
        try:
            await p.hub.join(conn, first.since)
        except Exception as exc:  # the database is unavailable: come back later
            log.warning("join failed: %s", type(exc).__name__)
            conn.close(CloseCode.TRY_AGAIN_LATER, "database unavailable")
            return
        await _read_loop(websocket, conn, limit, settings, expiry)
    finally:
        expiry.cancel()
        p.hub.leave(conn)
        if conn.state is not ConnState.CLOSING:
            conn.close(CloseCode.NORMAL, "bye")
        await conn.wait_closed()


class _Expiry:
    """Closes the connection with 4001 when its token expires; re-armed on refresh."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.handle: asyncio.TimerHandle | None = None

    def arm(self, expires_at: float) -> None:
        self.cancel()
        delay = max(0.0, expires_at - time.time())
        self.handle = asyncio.get_running_loop().call_later(
            delay, self.conn.close, CloseCode.NOT_AUTHENTICATED, "token_expired"
        )

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


async def _read_loop(
    websocket: WebSocket,
    conn: Connection,
    limit: int,
    settings: Settings,
    expiry: _Expiry,
) -> None:
    while conn.state is not ConnState.CLOSING:
        try:
            raw = await _receive(websocket, limit)
            msg = parse_client_message(raw)
        except WebSocketDisconnect:
            return
        except ProtocolViolation as exc:
            conn.close(exc.code, exc.reason)
            return
        if isinstance(msg, PingMessage):
            conn.reply(PONG)
        elif isinstance(msg, AuthMessage):
            # A fresh token for the same person extends the session; anyone else: no.
            try:
                again = verify_token(settings, msg.token)
            except ApiError as exc:
                conn.close(CloseCode.NOT_AUTHENTICATED, exc.code)
                return
            if again.id != conn.owner:
                conn.close(CloseCode.BAD_MESSAGE, "a connection belongs to one user")
                return
            expiry.arm(again.expires_at)


routes = [WebSocketRoute("/ws", ws_endpoint)]
