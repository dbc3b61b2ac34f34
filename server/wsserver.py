"""``/ws`` under uvicorn without the ASGI WebSocket layer: an ``asyncio.Protocol`` that
uvicorn's HTTP protocol hands the upgrade to (``uvicorn.Config(ws=protocol_for(app))``,
built in ``server.serving``).

Why: per socket, uvicorn's own WebSocket protocol holds websockets' ``ServerProtocol``,
an ASGI task with its coroutine frames for the socket's whole life, two keepalive
timers, and makes one ``transport.write`` per message. Here, after the handshake a
socket is this object, a ``frames.Parser``, and the hub's ``Connection`` and
``Session``: frames arrive in ``data_received`` and go to synchronous handlers (the
rules are ``server.socket_rules``, shared with the ASGI endpoint); the only task is the
join (it reads the database), and it ends once the socket is live.

Writes: an event's frame is encoded once for every socket it goes to (``FrameCache``:
the hub hands the same message object to each), and what a socket is given within one
loop iteration leaves in one ``transport.write``, all sockets flushed by one
``call_soon`` (``Sockets.flush``, in ``server.wssockets``). While the transport is
paused (the peer reads slower than we write) a send waits, so the connection's bounded
queue fills and a reader that stays behind is closed with 4008, as on the ASGI path.

Keepalive: one sweep over all sockets every ``ws_ping_interval`` seconds instead of
two timers per socket: a socket heard from since the last sweep is left alone, a
silent one gets a ping, and one still silent a sweep after its ping is closed (1011).

Anything but ``/ws`` is handed to uvicorn's own WebSocket protocol unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, ClassVar, cast

from starlette.applications import Starlette
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from server import frames, origins
from server import socket_rules as rules
from server.api.common import parts_of
from server.auth import User
from server.errors import CloseCode, Unauthorized, Unavailable
from server.frames import FrameError, Parser
from server.limits import MessageMeter
from server.session import Session
from server.wire import AuthMessage, ProtocolViolation
from server.wssockets import FRAMES, Sockets

log = logging.getLogger("taskbell.ws")

PATH = "/ws"
CLOSE_TIMEOUT_S = 10.0  # how long a sent close frame waits for the peer's answer
MAX_HEAD_BYTES = 16384  # an upgrade request's head (uvicorn parsed it already)

# A socket's phases, in order (HANDED: another path, uvicorn's own protocol serves it).
HANDSHAKE, AUTH, JOINING, LIVE, CLOSING, GONE, HANDED = range(7)


class LeanSocket(asyncio.Protocol):
    """One upgraded connection (see the module docstring); also the ``Sender`` of its
    hub ``Connection``."""

    sockets: ClassVar[Sockets]

    __slots__ = (
        "address",
        "head",
        "heard",
        "meter",
        "out",
        "parser",
        "paused",
        "pinged",
        "resume",
        "session",
        "state",
        "stock",
        "timer",
        "transport",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.sockets.bind(config, server_state, app_state)
        self.transport: asyncio.Transport | None = None
        self.state = HANDSHAKE
        self.head = b""
        self.parser: Parser | None = None
        self.out: list[bytes] | None = None  # frames waiting for this iteration's flush
        self.paused = False
        self.resume: asyncio.Future[None] | None = None
        self.heard = True
        self.pinged = False
        self.timer: asyncio.TimerHandle | None = None  # auth deadline, then close wait
        self.address: str | None = None  # counted as not yet authenticated under this
        self.session: Session | None = None
        self.meter: MessageMeter | None = None
        self.stock: WebSocketsSansIOProtocol | None = None  # what serves a HANDED one

    # ------------------------------------------------------------ asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        state = self.sockets.server_state
        assert state is not None
        state.connections.add(cast(Any, self))

    def data_received(self, data: bytes) -> None:
        self.heard = True
        if self.stock is not None:
            self.stock.data_received(data)
            return
        if self.state == HANDSHAKE:
            self._handshake(data)
            return
        parser = self.parser
        if parser is None or self.state == GONE:
            return
        parser.feed(data)
        if self.state == JOINING:
            if parser.buffered > 2 * parser.limit + 16 and self.transport is not None:
                self.transport.pause_reading()  # a flood while joining waits
            return
        self._take()

    def eof_received(self) -> bool | None:
        if self.stock is not None:
            self.stock.eof_received()
        return None  # close the transport: connection_lost follows

    def pause_writing(self) -> None:
        if self.stock is not None:
            self.stock.pause_writing()
        self.paused = True

    def resume_writing(self) -> None:
        if self.stock is not None:
            self.stock.resume_writing()
        self.paused = False
        resume, self.resume = self.resume, None
        if resume is not None and not resume.done():
            resume.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stock is not None:
            self.stock.connection_lost(exc)
            return
        was = self.state
        self.state = GONE
        sockets = self.sockets
        sockets.live.discard(self)
        if sockets.server_state is not None:
            sockets.server_state.connections.discard(cast(Any, self))
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.out = None
        self.resume_writing()  # a send waiting for room gives up (the socket is gone)
        self._arrived()
        if was != JOINING:  # (a join in progress ends the session itself)
            self._end_session()

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012 (clients reconnect elsewhere), and
        without waiting for the peer's answer (as uvicorn's own protocol does: the
        server waits for every connection to end before it stops)."""
        if self.state in (AUTH, JOINING, LIVE):
            self._send_close(CloseCode.SERVICE_RESTART, "server restarting")
        if self.transport is not None and self.state != GONE:
            self.transport.close()

    # ------------------------------------------------------------ the handshake

    def _handshake(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        head = self.head = self.head + data
        try:
            request = frames.parse_request(head)
        except ValueError:
            request = None
            head = b"x" * (MAX_HEAD_BYTES + 1)
        if request is None:
            if len(head) > MAX_HEAD_BYTES:
                transport.write(
                    frames.error_response(400, "Bad Request", "bad_request", "not an upgrade")
                )
                transport.close()
            return
        self.head = b""
        if request.path != PATH:
            self._hand_over(data=head)
            return
        sockets = self.sockets
        app = sockets.app
        settings = parts_of(app).settings
        allowed = settings.allowed_origins
        scope = {"type": "websocket", "path": PATH, "headers": request.headers}
        if allowed and origins.refused(scope, allowed):
            transport.write(
                frames.http_response(
                    403, "Forbidden", origins.REFUSAL_HEADERS, origins.REFUSAL_BODY
                )
            )
            transport.close()
            return
        accepted, answer = frames.handshake(request)
        transport.write(answer)
        if not accepted:
            transport.close()
            return
        self.parser = Parser(settings.max_ws_message_bytes)
        self.state = AUTH
        sockets.add_live(self)
        address = self._client_address(request)
        try:
            rules.arriving(app, address)  # 4029 over the per-address cap
        except ProtocolViolation as exc:
            self._send_close(*rules.refusal(exc))
            return
        self.address = address
        self.timer = asyncio.get_running_loop().call_later(
            settings.auth_timeout_s, self._send_close, *rules.NO_AUTH_IN_TIME
        )

    def _client_address(self, request: frames.Request) -> str:
        assert self.transport is not None
        # (The transport's own record of the peer: no system call, unlike uvicorn's
        # get_remote_addr.)
        peer = self.transport.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else None
        trusted = self.sockets.trusted
        if trusted is not None and host in trusted:
            forwarded = [v for k, v in request.headers if k == b"x-forwarded-for"]
            if forwarded:
                found, _ = trusted.get_trusted_client_address(
                    b", ".join(forwarded).decode("latin-1")
                )
                host = found or host
        return host if host is not None else "unknown"

    def _hand_over(self, data: bytes) -> None:
        """Another path: uvicorn's own WebSocket protocol and the ASGI app answer it.
        This socket passes it every event (uvicorn sets the transport's protocol to
        this one after ``data_received`` returns, so a ``set_protocol`` here would not
        last)."""
        sockets = self.sockets
        assert self.transport is not None and sockets.config is not None
        assert sockets.server_state is not None
        sockets.server_state.connections.discard(cast(Any, self))
        stock = WebSocketsSansIOProtocol(
            config=sockets.config, server_state=sockets.server_state, app_state=sockets.app_state
        )
        stock.connection_made(self.transport)
        self.stock = stock
        self.state = HANDED
        stock.data_received(data)

    # ------------------------------------------------------------ reading

    def _take(self) -> None:
        """Handle every whole frame received, until the socket stops listening."""
        parser = self.parser
        while parser is not None and self.state in (AUTH, LIVE, CLOSING):
            try:
                event = parser.next()
            except FrameError as exc:
                self._fail(exc.code, exc.reason)
                return
            if event is None:
                return
            opcode, payload = event
            if opcode == frames.PING:
                # Not while the peer is not reading: a flood of pings would pile pongs
                # up in the transport's buffer (RFC 6455 5.5.3 lets a pong be skipped).
                if not self.paused:
                    self._queue(frames.encode(frames.PONG, payload))
            elif opcode == frames.CLOSE:
                self._peer_closed(payload)
                return
            elif opcode == frames.PONG:
                pass  # heard: that is all a pong is for
            elif self.state == AUTH:
                self._greet(payload)
            elif self.state == LIVE:
                session, meter = self.session, self.meter
                if session is None or meter is None:
                    return  # the session is ending: nothing more is read
                if not rules.answer(self.sockets.app, session, meter, payload):
                    self._end_session()

    def _greet(self, payload: bytes) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        app = self.sockets.app
        try:
            who, first = rules.greet(app, payload)
        except (ProtocolViolation, Unauthorized, Unavailable) as exc:
            self._arrived()
            self._send_close(*rules.refusal(exc))
            return
        self._arrived()
        self.state = JOINING
        task = asyncio.get_running_loop().create_task(self._join(who, first))
        tasks = self.sockets.server_state
        if tasks is not None:
            tasks.tasks.add(task)
            task.add_done_callback(tasks.tasks.discard)

    async def _join(self, who: User, first: AuthMessage) -> None:
        app = self.sockets.app
        parts = parts_of(app)
        session = parts.hub.session(self, who, first.since, first.since_feeds)
        try:
            await session.__aenter__()
        except Unavailable:
            return  # closed with 1013 (the session ended itself)
        self.session = session
        if self.state != JOINING:  # gone or closed while joining
            self._end_session()
            return
        self.state = LIVE
        self.meter = rules.message_meter(app)
        if self.transport is not None:
            self.transport.resume_reading()
        self._take()

    def _peer_closed(self, payload: bytes) -> None:
        """The peer's close frame: our close answered, or theirs to echo."""
        transport = self.transport
        assert transport is not None
        if self.state != CLOSING:  # echo the code (the parser checked it)
            self._flush_with(frames.encode(frames.CLOSE, payload[:2]))
        self.state = CLOSING
        transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """A protocol error: the rest of the stream means nothing, so it is not read
        any more, and the transport closes once the close frame is out (the peer's
        answer could be stuck behind the bytes we refuse to parse). Through the
        connection once joined, else directly."""
        self.parser = None
        # The client's fault, not the server's: one INFO line, no traceback.
        log.info("closed a socket that broke the protocol (%d): %s", code, reason)
        conn = self.session.conn if self.session is not None else None
        if conn is not None and self.state == LIVE:
            conn.close(code, reason)
            self._end_session()
        else:
            self._arrived()
            self._send_close(code, reason)

    def _arrived(self) -> None:
        address, self.address = self.address, None
        if address is not None:
            rules.arrived(self.sockets.app, address)

    def _end_session(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.end_now()

    def keepalive(self) -> None:
        """The sweep's visit (``Sockets.keepalive``)."""
        if self.heard:
            self.heard = self.pinged = False
        elif not self.pinged:
            self.pinged = True
            self._queue(frames.PING_FRAME)
        elif self.transport is not None:
            self._send_close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            self.transport.abort()

    # ------------------------------------------------------------ writing

    def _queue(self, frame: bytes) -> None:
        if self.state >= CLOSING:  # nothing may follow a close frame
            return
        out = self.out
        if out is None:
            self.out = [frame]
            self.sockets.wants_flush(self)
        else:
            out.append(frame)

    def flush(self) -> None:
        out, self.out = self.out, None
        if out and self.transport is not None and self.state != GONE:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _flush_with(self, frame: bytes) -> None:
        """Write what is waiting and ``frame`` now, in that order."""
        out, self.out = self.out, None
        if self.transport is not None and self.state != GONE:
            self.transport.write(b"".join(out) + frame if out else frame)

    def _send_close(self, code: int, reason: str) -> None:
        if self.state >= CLOSING:
            return
        self.state = CLOSING
        self.sockets.live.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        self._flush_with(frames.close(code, reason))
        transport = self.transport
        assert transport is not None
        if self.parser is None:  # failed (``_fail``): no answer will be read
            transport.close()
            return
        self.timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, transport.abort)

    async def _writable(self) -> None:
        while self.paused and self.state != GONE:
            resume = self.resume
            if resume is None or resume.done():
                resume = self.resume = asyncio.get_running_loop().create_future()
            await asyncio.shield(resume)

    # ------------------------------------------------------------ the Sender

    async def send_text(self, data: str) -> None:
        if self.paused:
            await self._writable()
        if self.state >= CLOSING:
            raise ConnectionError("the socket is closing")
        self._queue(FRAMES.of(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.paused:
            await self._writable()
        self._send_close(code, reason or "")


def protocol_for(app: Starlette) -> type[LeanSocket]:
    """The protocol class to give uvicorn for ``app`` (one ``Sockets`` per server)."""

    class Bound(LeanSocket):
        __slots__ = ()
        sockets = Sockets(app)

    with contextlib.suppress(AttributeError):
        Bound.__qualname__ = Bound.__name__ = "LeanSocket"
    return Bound
