"""Revoked people: their tokens issued up to the moment of revocation are refused, and
their open sockets and event streams are closed, on every instance.

The database holds the truth (``revocation``: user → revoked_at). Each instance keeps the
table in memory: all of it at start, then whatever is newer every ``poll_s`` (1 s; an
indexed read of nothing, usually), so a revocation written by any instance reaches every
other within about a second, whatever happened to pub/sub. The instance that took the
revocation applies it at once.

Tokens carry ``iat`` in whole seconds: a token issued in the same second as the
revocation is refused too (mint the new one a second later).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select

from server.auth import User
from server.clock import as_utc
from server.db import DATABASE_ERRORS, Engines
from server.errors import Unauthorized, Unavailable
from server.models import revocation_t
from server.polling import Poller

OnRevoked = Callable[[str, str], None]  # (tenant, user)


class Revocations:
    def __init__(self, engines: Engines, *, poll_s: float = 1.0) -> None:
        self.engines = engines
        self.poll_s = poll_s
        self._at: dict[tuple[str, str], float] = {}  # (tenant, user) → last revoked second
        self._watermark: datetime | None = None
        self._on_revoked: OnRevoked = lambda tenant, user: None
        self._poller = Poller("revocations", self.refresh, poll_s)
        self._loaded = False

    def check(self, who: User) -> User:
        """``who``, unless their tokens issued so far were revoked: then raises
        ``Unauthorized`` (``token_revoked``). Until the table could be read once (the
        database was away at start), nobody can be told apart: ``Unavailable``."""
        if not self._loaded:
            raise Unavailable("the database is unavailable; retry shortly")
        revoked = self._at.get((who.tenant, who.id))
        if revoked is not None and who.issued_at <= revoked:
            raise Unauthorized("this token was revoked; sign in again", code="token_revoked")
        return who

    def note(self, tenant: str, user: str, at: datetime) -> None:
        """A revocation this instance just committed: apply it now."""
        self._apply(tenant, user, at)

    async def start(self, on_revoked: OnRevoked) -> None:
        """Load every revocation, then keep polling for new ones (owned here). A
        database away at start is tried again at every poll."""
        self._on_revoked = on_revoked
        with contextlib.suppress(*DATABASE_ERRORS):
            await self.refresh()
        self._poller.start()

    async def stop(self) -> None:
        await self._poller.stop()

    async def refresh(self) -> None:
        """Read the revocations newer than the last one seen."""
        query = select(revocation_t.c.tenant, revocation_t.c.user_id, revocation_t.c.revoked_at)
        if self._watermark is not None:
            query = query.where(revocation_t.c.revoked_at >= self._watermark)
        async with self.engines.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
        for tenant, user, at in rows:
            self._apply(str(tenant), str(user), as_utc(at))
        self._loaded = True

    def _apply(self, tenant: str, user: str, at: datetime) -> None:
        second = float(math.floor(at.timestamp()))
        if self._watermark is None or at > self._watermark:
            self._watermark = at
        if self._at.get((tenant, user), -1.0) >= second:
            return
        self._at[(tenant, user)] = second
        self._on_revoked(tenant, user)
