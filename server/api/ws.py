"""``/ws``: authenticate, snapshot or replay, then live events (docs/protocol.md).

Close codes: 4001 not authenticated or token expired, 4008 too slow (resume with
``since``), 1008 bad message, 1009 message too big, 1013 database unavailable (retry),
1012 server restarting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from server import limits
from server.api.common import Parts
from server.auth import User
from server.errors import ApiError, CloseCode, Unauthorized, Unavailable
from server.session import Session
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
        limits.ws_arriving(websocket)  # 4029 over the per-address cap of unauthenticated
        raw = await asyncio.wait_for(_receive(websocket, limit), settings.auth_timeout_s)
        first = parse_client_message(raw)
        if not isinstance(first, AuthMessage):
            raise ProtocolViolation(CloseCode.NOT_AUTHENTICATED, "send an auth message first")
        who = p.authenticate(first.token)
        limits.ws_admit(websocket, who)  # 4029 over the per-user cap of sockets
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
    except Unavailable:
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "database unavailable")
        return
    finally:
        limits.ws_arrived(websocket)

    try:
        async with p.hub.session(websocket, who, first.since, first.since_feeds) as session:
            await _read_loop(websocket, session, limit, p.authenticate)
    except Unavailable:
        return  # closed with 1013: the client comes back later


async def _read_loop(
    websocket: WebSocket, session: Session, limit: int, authenticate: Callable[[str], User]
) -> None:
    conn = session.conn
    meter = limits.message_meter(websocket)
    while session.open:
        try:
            raw = await _receive(websocket, limit)
            meter.tick()  # 4029 "too many messages" over TASKBELL_WS_MESSAGE_RATE
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
                again = authenticate(msg.token)
            except ApiError as exc:
                conn.close(CloseCode.NOT_AUTHENTICATED, exc.code)
                return
            if not session.refresh(again):
                return


routes = [WebSocketRoute("/ws", ws_endpoint)]
