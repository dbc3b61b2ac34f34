"""One subscriber's time on the hub, the same for ``/ws`` and ``/events``.

``async with hub.session(sender, who, since, since_feeds) as session``: on entry the
connection joins every feed its user follows (snapshot or replay, then live events)
and a timer closes it with 4001 when the token expires; ``refresh`` re-arms that timer
for a fresh token of the same person. On exit (the peer left, a bad message, the
endpoint returned) it leaves the hub, is closed with 1000 unless it was already
closing, and its writer and closer are awaited.

Only the database's own errors turn into ``Unavailable`` (the connection is closed with
1013, "try again later"); anything else is a bug and propagates as one.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import TYPE_CHECKING

from server.auth import User
from server.connection import Connection, ConnState
from server.db import DATABASE_ERRORS
from server.errors import CloseCode, Unavailable

if TYPE_CHECKING:
    from server.hub import Hub


class Session:
    __slots__ = ("_expires_at", "_expiry", "conn", "hub", "since", "since_feeds")

    def __init__(
        self,
        hub: Hub,
        conn: Connection,
        who: User,
        since: int | None,
        since_feeds: dict[str, int] | None = None,
    ) -> None:
        self.hub = hub
        self.conn = conn
        self.since = since
        self.since_feeds = since_feeds or {}
        self._expires_at = who.expires_at
        self._expiry: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> Session:
        self._arm(self._expires_at)
        try:
            await self.hub.join(self.conn, self.since, self.since_feeds)
        except DATABASE_ERRORS as exc:
            self.conn.close(CloseCode.TRY_AGAIN_LATER, "database unavailable")
            await self._end()
            raise Unavailable("the database is unavailable; retry shortly") from exc
        except BaseException:
            await self._end()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._end()

    def refresh(self, who: User) -> bool:
        """Extend the session with a fresh token. A token of anyone else closes the
        connection with 1008 (a connection belongs to one user); returns False then."""
        if (who.tenant, who.id) != (self.conn.tenant, self.conn.user):
            self.conn.close(CloseCode.BAD_MESSAGE, "a connection belongs to one user")
            return False
        self._arm(who.expires_at)
        return True

    @property
    def open(self) -> bool:
        return self.conn.state is not ConnState.CLOSING

    def _arm(self, expires_at: float) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(
            max(0.0, expires_at - time.time()),
            self.conn.close,
            CloseCode.NOT_AUTHENTICATED,
            "token_expired",
        )

    def end_now(self) -> None:
        """The end for a socket layer that knows its socket is gone or already closing
        (``server.wsserver``): leave the hub and send nothing more, without a task or
        a wait (``_end`` would close the connection with 1000 and await its closer)."""
        if self._expiry is not None:
            self._expiry.cancel()
        self.hub.leave(self.conn)
        self.conn.gone()

    async def _end(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self.hub.leave(self.conn)
        if self.conn.state is not ConnState.CLOSING:
            self.conn.close(CloseCode.NORMAL, "bye")
        await self.conn.wait_closed()
