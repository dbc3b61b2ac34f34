"""What a ``/ws`` socket's messages mean, the same whichever server carries it: the
ASGI endpoint (``server.api.ws``, any ASGI server) and Taskbell's own WebSocket
protocol under uvicorn (``server.wsserver``) both ask here and only move bytes.

- Before auth: ``arriving`` counts the socket against its address's cap of sockets
  that have not authenticated (4029); ``greet`` takes the first message, which must be
  an ``auth`` with a valid token of someone under the per-user socket cap, and
  ``refusal`` gives the close (code, reason) for what ``greet`` raised (4001 no auth or
  a bad token, 1008 a bad message, 4029 a cap, 1013 the database away).
- After the join: ``answer`` handles each message: over ``TASKBELL_WS_MESSAGE_RATE``
  4029, a bad one 1008, ``ping`` -> ``pong``, a fresh ``auth`` of the same person
  extends the session (anyone else: 1008; a bad token: 4001).
"""

from __future__ import annotations

from typing import Any

from server import limits
from server.api.common import parts_of
from server.auth import User
from server.errors import ApiError, CloseCode, Unauthorized, Unavailable
from server.limits import MessageMeter
from server.session import Session
from server.wire import AuthMessage, PingMessage, ProtocolViolation, parse_client_message

PONG = '{"type":"pong"}'
NO_AUTH_IN_TIME = (int(CloseCode.NOT_AUTHENTICATED), "no auth message in time")

arriving = limits.ws_arriving
arrived = limits.ws_arrived
message_meter = limits.message_meter


def greet(app: Any, raw: str | bytes) -> tuple[User, AuthMessage]:
    """The person the first message authenticates, and that message. Raises
    ``ProtocolViolation`` or ``ApiError`` (``refusal`` says how to close)."""
    first = parse_client_message(raw)
    if not isinstance(first, AuthMessage):
        raise ProtocolViolation(CloseCode.NOT_AUTHENTICATED, "send an auth message first")
    who = parts_of(app).authenticate(first.token)
    limits.ws_admit(app, who)  # 4029 over the per-user cap of sockets
    return who, first


def refusal(exc: ProtocolViolation | Unauthorized | Unavailable) -> tuple[int, str]:
    """The close (code, reason) for a socket whose auth phase raised ``exc``."""
    if isinstance(exc, ProtocolViolation):
        return int(exc.code), exc.reason
    if isinstance(exc, Unavailable):
        return int(CloseCode.TRY_AGAIN_LATER), "database unavailable"
    return int(CloseCode.NOT_AUTHENTICATED), exc.code


def answer(app: Any, session: Session, meter: MessageMeter, raw: str | bytes) -> bool:
    """Handle one message of a joined socket; False once the connection is closing."""
    conn = session.conn
    try:
        meter.tick()  # 4029 "too many messages" over TASKBELL_WS_MESSAGE_RATE
        msg = parse_client_message(raw)
    except ProtocolViolation as exc:
        conn.close(exc.code, exc.reason)
        return False
    if isinstance(msg, PingMessage):
        conn.reply(PONG)
    elif isinstance(msg, AuthMessage):
        # A fresh token for the same person extends the session; anyone else: no.
        try:
            again = parts_of(app).authenticate(msg.token)
        except ApiError as exc:
            conn.close(CloseCode.NOT_AUTHENTICATED, exc.code)
            return False
        if not session.refresh(again):
            return False
    return session.open
