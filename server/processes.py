"""Process instances and definitions: the life of a business process around its tasks.

- An instance is known from its first task or created explicitly. It ends when the
  producer says so (completed, error, canceled: open steps are canceled with it), or by
  itself when no step is open any more, unless the producer said more steps will come
  (``expect_more``). Its duration is measured when it ends.
- A definition (by process name) can be disabled: new tasks or instances of it are
  refused with 409; running instances carry on.
- Statistics (``server.stats``) count instances by status; durations come from
  completed ones only.

The rules (``Guard``) are pure; the SQL here runs inside a write
transaction that ``server.writes`` holds, so an instance never disagrees with its tasks.
Nothing here applies task operations: ``writes`` does, and calls down into this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import and_, bindparam, literal, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from server import direct
from server.clock import as_utc
from server.errors import Conflict, NotFound
from server.models import definition_t, instance_t, task_t
from server.ops import InstanceStatus, TaskOp
from server.transitions import Outcome
from server.wire import FINAL_STATUSES, OPEN_STATUSES, Status, TaskCreate, iso

RUNNING = InstanceStatus.RUNNING
_OPEN = [s.value for s in OPEN_STATUSES]


class InstanceJSON(TypedDict):
    id: str
    name: str
    status: str
    expect_more: bool
    started_at: str | None
    ended_at: str | None
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class Instance:
    id: str
    name: str
    status: InstanceStatus
    expect_more: bool
    started_at: datetime
    ended_at: datetime | None
    duration_ms: int | None

    @classmethod
    def from_row(cls, m: Mapping[Any, Any]) -> Instance:
        return cls(
            id=m["id"],
            name=m["name"],
            status=InstanceStatus(m["status"]),
            expect_more=bool(m["expect_more"]),
            started_at=as_utc(m["started_at"]),
            ended_at=as_utc(m["ended_at"]),
            duration_ms=m["duration_ms"],
        )

    def to_json(self) -> InstanceJSON:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status.value,
            "expect_more": self.expect_more,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "duration_ms": self.duration_ms,
        }


@dataclass(frozen=True, slots=True)
class Started:
    """An instance ``StartInstance`` asked for; ``created`` is false for a repeat."""

    instance: Instance
    created: bool


@dataclass(frozen=True, slots=True)
class Ended:
    """An instance ``EndInstance`` ended, and how many open steps it canceled."""

    instance: Instance
    canceled_steps: int


@dataclass(frozen=True, slots=True)
class Guard:
    """What a batch of creates must respect: disabled definitions (which refuse new
    instances; running ones carry on), ended instances."""

    disabled: frozenset[str]
    ended: dict[str, str]
    running: frozenset[str] = frozenset()

    def check_create(self, body: TaskCreate) -> None:
        """Raises ``Conflict`` when the task's process may not get new steps."""
        if body.process is None:
            return
        if body.process.name in self.disabled and body.process.instance_id not in self.running:
            raise Conflict(
                f"process {body.process.name!r} is disabled; enable it to start new steps",
                code="process_disabled",
            )
        status = self.ended.get(body.process.instance_id)
        if status is not None:
            raise Conflict(
                f"process instance {body.process.instance_id!r} has ended ({status})",
                code="process_ended",
            )


NO_GUARD = Guard(frozenset(), {})

# The statements of the write path are built once (with bound parameters; ``expanding``
# lists): building and cache-keying them afresh in every transaction cost more than
# running them (the profiles of a lone change, bench/RESULTS.md, session 4).

# One round trip for both questions of a create: which names are disabled, and which of
# the named instances exist (running ones may add steps to a disabled process).
_GUARD = union_all(
    select(
        literal("disabled").label("what"),
        definition_t.c.name.label("key"),
        literal("").label("status"),
    ).where(
        and_(
            definition_t.c.tenant == bindparam("tenant"),
            definition_t.c.name.in_(bindparam("names", expanding=True)),
            definition_t.c.disabled.is_(True),
        )
    ),
    select(literal("instance"), instance_t.c.id, instance_t.c.status).where(
        and_(
            instance_t.c.tenant == bindparam("tenant"),
            instance_t.c.id.in_(bindparam("ids", expanding=True)),
        )
    ),
)
_NEW_INSTANCES = {
    "postgresql": postgresql.insert(instance_t).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(instance_t).on_conflict_do_nothing(),
}
_CANDIDATES = (
    select(instance_t)
    .where(
        and_(
            instance_t.c.tenant == bindparam("tenant"),
            instance_t.c.id.in_(bindparam("ids", expanding=True)),
            instance_t.c.status == RUNNING.value,
            instance_t.c.expect_more.is_(False),
        )
    )
    .order_by(instance_t.c.id)
)
# Lock first, count second: of two transactions finishing the last two steps, the one
# that waited here sees the other's step as done.
_CANDIDATES_LOCKED = _CANDIDATES.with_for_update()
_STEPS_LEFT = (
    select(task_t.c.process_instance_id, task_t.c.status)
    .where(
        and_(
            task_t.c.tenant == bindparam("tenant"),
            task_t.c.process_instance_id.in_(bindparam("ids", expanding=True)),
            task_t.c.status.in_([*_OPEN, Status.COMPLETED.value]),
        )
    )
    .distinct()
)
_END_INSTANCE = (
    update(instance_t)
    .where(and_(instance_t.c.tenant == bindparam("b_tenant"), instance_t.c.id == bindparam("b_id")))
    .values(
        status=bindparam("b_status"),
        ended_at=bindparam("b_ended"),
        duration_ms=bindparam("b_duration"),
    )
)


async def load_guard(conn: AsyncConnection, tenant: str, creates: Sequence[TaskCreate]) -> Guard:
    procs = [b.process for b in creates if b.process is not None]
    if not procs:
        return NO_GUARD
    names = sorted({p.name for p in procs})
    ids = sorted({p.instance_id for p in procs})
    disabled: set[str] = set()
    ended: dict[str, str] = {}
    running: set[str] = set()
    for row in await direct.execute(conn, _GUARD, {"tenant": tenant, "names": names, "ids": ids}):
        if row.what == "disabled":
            disabled.add(row.key)
        elif row.status == RUNNING.value:
            running.add(row.key)
        else:
            ended[row.key] = row.status
    return Guard(frozenset(disabled), ended, frozenset(running))


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def track(
    conn: AsyncConnection, changes: Sequence[tuple[TaskOp, Outcome]], now: datetime
) -> None:
    """Keep instances in step with their tasks (inside the write transaction): create
    the instances that new tasks name, and end the ones left without open steps."""
    dialect = conn.dialect.name
    new: dict[tuple[str, str], str] = {}
    touched: dict[str, set[str]] = {}
    for _, outcome in changes:
        state = outcome.state
        if state is None or state.process_instance_id is None:
            continue
        if outcome.before is None:
            new.setdefault((state.tenant, state.process_instance_id), state.process_name or "")
        if state.status in FINAL_STATUSES:
            touched.setdefault(state.tenant, set()).add(state.process_instance_id)
    if new:
        rows = [
            {
                "tenant": t,
                "id": i,
                "name": n,
                "status": RUNNING.value,
                "expect_more": False,
                "started_at": now,
            }
            for (t, i), n in sorted(new.items())
        ]
        await direct.execute(conn, _NEW_INSTANCES[dialect], rows)
    for tenant, ids in sorted(touched.items()):
        await complete_if_done(conn, tenant, sorted(ids), now)


async def complete_if_done(
    conn: AsyncConnection, tenant: str, instance_ids: Sequence[str], now: datetime
) -> None:
    """End the running instances among ``instance_ids`` that expect nothing more and have
    no open step left: three statements, however many instances. One with a completed
    step ends ``completed``; one whose steps were all canceled ends ``canceled`` (it did
    not complete, so it counts in no completed statistics)."""
    query = _CANDIDATES_LOCKED if conn.dialect.name == "postgresql" else _CANDIDATES
    found = await direct.execute(conn, query, {"tenant": tenant, "ids": list(instance_ids)})
    candidates = [Instance.from_row(r._mapping) for r in found]
    if not candidates:
        return
    still_open: set[str] = set()
    completed: set[str] = set()
    for r in await direct.execute(
        conn, _STEPS_LEFT, {"tenant": tenant, "ids": [c.id for c in candidates]}
    ):
        (completed if r.status == Status.COMPLETED.value else still_open).add(r.process_instance_id)
    done = [c for c in candidates if c.id not in still_open]
    if done:
        await direct.execute(
            conn,
            _END_INSTANCE,
            [
                {
                    "b_tenant": tenant,
                    "b_ended": now,
                    "b_id": c.id,
                    "b_status": (
                        InstanceStatus.COMPLETED if c.id in completed else InstanceStatus.CANCELED
                    ).value,
                    "b_duration": _duration(c, now),
                }
                for c in done
            ],
        )


def _duration(inst: Instance, now: datetime) -> int:
    return max(0, int((now - inst.started_at).total_seconds() * 1000))


def _ended_conflict(inst: Instance) -> Conflict:
    return Conflict(
        f"process instance {inst.id!r} already ended ({inst.status.value})",
        code="process_ended",
        status=inst.status.value,
    )


# ---------------------------------------------------------------- instance-level writes


async def get(
    conn: AsyncConnection, tenant: str, instance_id: str, lock: bool = False
) -> Instance | None:
    query = select(instance_t).where(
        and_(instance_t.c.tenant == tenant, instance_t.c.id == instance_id)
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return Instance.from_row(row._mapping) if row else None


async def _locked_running(conn: AsyncConnection, tenant: str, instance_id: str) -> Instance:
    inst = await get(conn, tenant, instance_id, lock=True)
    if inst is None:
        raise NotFound(f"process instance {instance_id!r} not found", code="process_not_found")
    return inst


async def _is_disabled(conn: AsyncConnection, tenant: str, name: str) -> bool:
    value = await conn.scalar(
        select(definition_t.c.disabled).where(
            and_(definition_t.c.tenant == tenant, definition_t.c.name == name)
        )
    )
    return bool(value)


async def start(
    conn: AsyncConnection,
    now: datetime,
    tenant: str,
    instance_id: str,
    name: str,
    expect_more: bool,
) -> Started:
    """The new instance, or the existing one for a repeat with the same name; raises
    Conflict for a disabled process or an id taken by another process."""
    current = await get(conn, tenant, instance_id)
    if current is not None:
        if current.name != name:
            raise Conflict(
                f"process instance {instance_id!r} already exists for process {current.name!r}",
                code="instance_id_conflict",
            )
        return Started(current, created=False)
    if await _is_disabled(conn, tenant, name):
        raise Conflict(f"process {name!r} is disabled", code="process_disabled")
    inst = Instance(instance_id, name, RUNNING, expect_more, now, None, None)
    await conn.execute(
        _insert(conn.dialect.name)(instance_t).values(
            tenant=tenant,
            id=instance_id,
            name=name,
            status=RUNNING.value,
            expect_more=expect_more,
            started_at=now,
        )
    )
    return Started(inst, created=True)


async def lock_to_end(
    conn: AsyncConnection, tenant: str, instance_id: str, status: InstanceStatus
) -> Instance:
    """Lock an instance that is to end as ``status``. Returns it: running, or already
    ended that same way (a no-op); raises NotFound, or Conflict when it ended otherwise."""
    inst = await _locked_running(conn, tenant, instance_id)
    if inst.status is not RUNNING and inst.status is not status:
        raise _ended_conflict(inst)
    return inst


async def open_step_ids(conn: AsyncConnection, tenant: str, instance_id: str) -> list[str]:
    """The instance's running and postponed steps, in id order."""
    rows = await conn.execute(
        select(task_t.c.id)
        .where(
            and_(
                task_t.c.tenant == tenant,
                task_t.c.process_instance_id == instance_id,
                task_t.c.status.in_(_OPEN),
            )
        )
        .order_by(task_t.c.id)
    )
    return [str(r.id) for r in rows]


async def end(
    conn: AsyncConnection, tenant: str, inst: Instance, status: InstanceStatus, now: datetime
) -> Instance:
    duration = _duration(inst, now)
    await conn.execute(
        update(instance_t)
        .where(and_(instance_t.c.tenant == tenant, instance_t.c.id == inst.id))
        .values(status=status.value, ended_at=now, duration_ms=duration)
    )
    return Instance(inst.id, inst.name, status, inst.expect_more, inst.started_at, now, duration)


async def set_expect_more(
    conn: AsyncConnection, now: datetime, tenant: str, instance_id: str, expect_more: bool
) -> Instance:
    inst = await _locked_running(conn, tenant, instance_id)
    if inst.status is not RUNNING:
        raise _ended_conflict(inst)
    await conn.execute(
        update(instance_t)
        .where(and_(instance_t.c.tenant == tenant, instance_t.c.id == instance_id))
        .values(expect_more=expect_more)
    )
    if not expect_more:
        await complete_if_done(conn, tenant, [instance_id], now)
    fresh = await get(conn, tenant, instance_id)
    assert fresh is not None
    return fresh


async def set_disabled(
    conn: AsyncConnection, now: datetime, tenant: str, name: str, disabled: bool
) -> None:
    """Switch a known process (one with an instance or a definition row); raises
    ``NotFound`` for a name never seen."""
    known = await conn.scalar(
        union_all(
            select(definition_t.c.name).where(
                and_(definition_t.c.tenant == tenant, definition_t.c.name == name)
            ),
            select(instance_t.c.name).where(
                and_(instance_t.c.tenant == tenant, instance_t.c.name == name)
            ),
        ).limit(1)
    )
    if known is None:
        raise NotFound(f"process {name[:50]!r} not found", code="process_not_found")
    ins = _insert(conn.dialect.name)(definition_t).values(
        tenant=tenant, name=name, disabled=disabled, updated_at=now
    )
    await conn.execute(
        ins.on_conflict_do_update(
            index_elements=[definition_t.c.tenant, definition_t.c.name],
            set_={"disabled": disabled, "updated_at": now},
        )
    )
