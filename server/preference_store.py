"""People's notification preferences in SQL: one ``preference`` row per (tenant, user)
who saved any; a person without one has the defaults (``server.preferences.DEFAULT``).

The body is stored as the validated value's JSON and validated again when read, so a
row is always a ``Preferences`` (a row that no longer validates, e.g. a time zone the
machine's database dropped, reads as the defaults rather than failing a write)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import and_, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server import direct
from server.db import Engines
from server.feeds import per_tenant
from server.models import preference_t
from server.preferences import DEFAULT, Preferences

log = logging.getLogger("taskbell.preferences")

Person = tuple[str, str]  # (tenant, user id)

# Built once with bound parameters (the push hook reads it in write transactions;
# building a statement costs more than running it).
_OF_USERS = select(preference_t.c.tenant, preference_t.c.user_id, preference_t.c.body).where(
    and_(
        preference_t.c.tenant == bindparam("tenant"),
        preference_t.c.user_id.in_(bindparam("users", expanding=True)),
    )
)


def _load(body: str) -> Preferences:
    try:
        return Preferences.model_validate_json(body)
    except ValidationError:
        log.warning("stored preferences no longer valid: using the defaults")
        return DEFAULT


class PreferenceStore:
    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def get(self, tenant: str, user: str) -> Preferences:
        """The person's preferences, or the defaults when they never saved any."""
        async with self.engines.reader.connect() as conn:
            found = await self.of_people(conn, [(tenant, user)])
        return found.get((tenant, user), DEFAULT)

    async def put(self, tenant: str, user: str, prefs: Preferences, now: datetime) -> None:
        """Replace the person's preferences: one upsert (``INSERT ... ON CONFLICT DO
        UPDATE``, on SQLite and PostgreSQL alike), so concurrent first saves of one
        person neither fail nor leave two rows: the last to commit wins."""
        dialect_insert = sqlite_insert if self.engines.is_sqlite else pg_insert
        stmt = dialect_insert(preference_t).values(
            tenant=tenant, user_id=user, body=prefs.model_dump_json(), updated_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[preference_t.c.tenant, preference_t.c.user_id],
            set_={"body": stmt.excluded.body, "updated_at": stmt.excluded.updated_at},
        )
        async with self.engines.writer.begin() as conn:
            await conn.execute(stmt)

    async def of_people(
        self, conn: AsyncConnection, people: Iterable[Person]
    ) -> dict[Person, Preferences]:
        """The saved preferences of ``(tenant, user)`` pairs, read on ``conn`` (inside a
        write transaction, for the push hook); people without a row are left out."""
        found: dict[Person, Preferences] = {}
        for tenant, users in per_tenant(people):  # (one tenant, most often)
            rows = await direct.execute(conn, _OF_USERS, {"tenant": tenant, "users": users})
            found.update({(r.tenant, r.user_id): _load(r.body) for r in rows})
        return found
