"""What all lean sockets of one server share (``server.wsserver``): the frame of the last
event, uvicorn's state, the sockets with something to write in this loop iteration (one
``call_soon`` flushes them all), and the keepalive sweep over the live ones."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from starlette.applications import Starlette
from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.server import ServerState

from server import frames


class Member(Protocol):
    """What the registry asks of a socket."""

    def flush(self) -> None: ...

    def keepalive(self) -> None: ...


class FrameCache:
    """The frame of the last text sent: the hub gives the same ``str`` object to every
    connection an event goes to, so it is encoded once (the reference held keeps the
    identity check sound: the object cannot be freed and its id reused)."""

    __slots__ = ("frame", "text")

    def __init__(self) -> None:
        self.text: str | None = None
        self.frame = b""

    def of(self, message: str) -> bytes:
        if message is not self.text:
            self.text = message
            self.frame = frames.text(message)
        return self.frame


FRAMES = FrameCache()


class Sockets:
    """One server's lean sockets: uvicorn's state (given to every protocol), the sockets
    with something to write this iteration, and the keepalive sweep."""

    __slots__ = (
        "app",
        "app_state",
        "config",
        "dirty",
        "live",
        "server_state",
        "sweep",
        "trusted",
    )

    def __init__(self, app: Starlette, config: Config | None = None) -> None:
        self.app = app
        self.config = config
        self.server_state: ServerState | None = None
        self.app_state: dict[str, Any] = {}
        self.trusted: _TrustedHosts | None = None
        self.dirty: list[Member] = []
        self.live: set[Member] = set()
        self.sweep: asyncio.TimerHandle | None = None

    def bind(self, config: Config, server_state: ServerState, app_state: dict[str, Any]) -> None:
        if self.server_state is not server_state:
            self.config, self.server_state, self.app_state = config, server_state, app_state
            self.trusted = (
                _TrustedHosts(config.forwarded_allow_ips) if config.proxy_headers else None
            )

    def wants_flush(self, sock: Member) -> None:
        if not self.dirty:
            asyncio.get_running_loop().call_soon(self.flush)
        self.dirty.append(sock)

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        for sock in dirty:
            sock.flush()

    def add_live(self, sock: Member) -> None:
        self.live.add(sock)
        self._arm()

    def _arm(self) -> None:
        interval = self.config.ws_ping_interval if self.config is not None else None
        if self.sweep is None and interval:
            self.sweep = asyncio.get_running_loop().call_later(interval, self.keepalive)

    def keepalive(self) -> None:
        self.sweep = None
        for sock in list(self.live):
            sock.keepalive()
        if self.live:
            self._arm()
