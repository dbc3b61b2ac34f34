"""The rules of a task's life, as plain functions on values (no I/O).

``decide`` takes the current state of one task (or ``None``), one operation and the
clock, and returns the new state and the *effects* on owners' feeds. The store turns
effects into seqs, counts and ``feed_event`` rows; nothing here knows about SQL.

State machine::

    (new) ──create──▶ running ──postpone──▶ postponed ──resume / due──▶ running
                        │  ▲                   │
                        │  └──── reassign ─────┤ (stays postponed)
                        ▼                      ▼
                  completed | canceled   completed | canceled      (final)

A task is in exactly one feed (``server.feeds``): its owner's (``user:<owner>``), or,
while it is offered to a role and nobody has claimed it, the role's (``role:<role>``).
Claiming moves it from the role's feed to the claimer's; unclaiming moves it back.
Only ``running`` tasks are in a feed, so the effects are: ``task.added`` (+1) when a
task becomes running in a feed, ``task.removed`` (-1) when it stops, and
``task.updated`` (0) when a running task changes in place. Each effect also says how the
feed's postponed count moves (``server.counts``); a change that moves only that count
(a task created postponed, a postponed task ended or moved) is a ``task.removed`` of 0.

Who may act: a producer (``audience`` None) on any task of its tenant; a person on a
task whose feed they follow (their own, their roles' queues, the people they stand in
for): ``audience`` is that set of feeds. Anything else is "not found", never 403.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from server.clock import as_utc
from server.counts import Place, postponed_moves
from server.errors import Conflict, NotFound, Unprocessable
from server.feeds import DEFAULT_TENANT, role_feed, role_key, user_feed, user_key
from server.ops import (
    CancelTask,
    ClaimTask,
    CompleteTask,
    CreateTask,
    FlagOverdue,
    PostponeTask,
    ResumeTask,
    TaskOp,
    UnclaimTask,
    UpdateTask,
)
from server.wire import (
    FINAL_STATUSES,
    Action,
    CommentRule,
    EventType,
    Status,
    TaskCreate,
    TaskJSON,
    TaskPatch,
    iso,
)


@dataclass(frozen=True, slots=True)
class TaskState:
    tenant: str
    id: str
    owner: str | None
    role: str | None
    acted_by: str | None
    title: str
    kind: str
    status: str
    process_instance_id: str | None
    process_name: str | None
    record_entity: str | None
    record_id: str | None
    record_title: str | None
    url: str | None
    postponed_until: datetime | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    body_hash: str
    due_at: datetime | None = None
    priority: str = "normal"
    overdue: bool = False
    actions: str | None = None  # JSON text, as stored
    outcome: str | None = None
    comment: str | None = None
    completed_by: str | None = None
    follows: str | None = None

    @classmethod
    def from_row(cls, m: Mapping[Any, Any]) -> TaskState:
        """A stored ``task`` row (its mapping) as a state."""
        return cls(
            tenant=m["tenant"],
            id=m["id"],
            owner=m["owner"],
            role=m["role"],
            acted_by=m["acted_by"],
            title=m["title"],
            kind=m["kind"],
            status=m["status"],
            process_instance_id=m["process_instance_id"],
            process_name=m["process_name"],
            record_entity=m["record_entity"],
            record_id=m["record_id"],
            record_title=m["record_title"],
            url=m["url"],
            postponed_until=as_utc(m["postponed_until"]),
            created_at=as_utc(m["created_at"]),
            updated_at=as_utc(m["updated_at"]),
            ended_at=as_utc(m["ended_at"]),
            body_hash=m["body_hash"],
            due_at=as_utc(m["due_at"]),
            priority=m["priority"],
            overdue=bool(m["overdue"]),
            actions=m["actions"],
            outcome=m["outcome"],
            comment=m["comment"],
            completed_by=m["completed_by"],
            follows=m["follows"],
        )

    def to_json(self) -> TaskJSON:
        return {
            "id": self.id,
            "owner": self.owner,
            "role": self.role,
            "acted_by": self.acted_by,
            "title": self.title,
            "kind": self.kind,
            "status": self.status,
            "process": (
                {"instance_id": self.process_instance_id, "name": self.process_name or ""}
                if self.process_instance_id
                else None
            ),
            "record": (
                {"entity": self.record_entity, "id": self.record_id, "title": self.record_title}
                if self.record_entity and self.record_id
                else None
            ),
            "url": self.url,
            "postponed_until": iso(self.postponed_until),
            "created_at": iso(self.created_at) or "",
            "updated_at": iso(self.updated_at) or "",
            "due_at": iso(self.due_at),
            "priority": self.priority,
            "overdue": self.overdue,
            "actions": orjson.loads(self.actions) if self.actions else None,
            "outcome": self.outcome,
            "comment": self.comment,
            "completed_by": self.completed_by,
            "follows": self.follows,
        }

    def action_rule(self, outcome: str) -> str | None:
        """The comment rule of action ``outcome``, or None when the task has no such one."""
        for action in orjson.loads(self.actions) if self.actions else ():
            if action["id"] == outcome:
                return str(action["comment"])
        return None

    @property
    def feed(self) -> str:
        """The feed this task is in while running: its owner's, else its role's."""
        return user_feed(self.owner) if self.owner is not None else role_feed(self.role or "")

    @property
    def key(self) -> str:
        """The key of ``feed``."""
        if self.owner is not None:
            return user_key(self.tenant, self.owner)
        return role_key(self.tenant, self.role or "")


@dataclass(frozen=True, slots=True)
class Effect:
    """One change to one feed (its key): becomes one seq and one feed_event. ``delta``
    moves the feed's running count, ``postponed`` its postponed count."""

    key: str
    type: EventType
    reason: str | None
    delta: int
    postponed: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one operation did. ``state`` is None when nothing changed (a repeat);
    ``created`` is true only for the create that made the task."""

    created: bool
    before: TaskState | None
    state: TaskState | None
    effects: tuple[Effect, ...] = ()

    @property
    def current(self) -> TaskState:
        state = self.state or self.before
        assert state is not None
        return state


Audience = frozenset[str] | None  # the feeds an acting person follows; None: a producer

# Fields added after tasks were first stored: left out of the digest while unset, so a
# repeat of a create made before they existed is still recognised as one.
_LATER_FIELDS = {
    "role": None,
    "due_at": None,
    "priority": "normal",
    "actions": None,
    "follows": None,
}


def body_hash(body: TaskCreate) -> str:
    """Stable digest of a create body, to tell an idempotent repeat from a conflict."""
    data = body.model_dump(mode="json")
    for name, unset in _LATER_FIELDS.items():
        if data.get(name) == unset:
            data.pop(name, None)
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _not_found(task_id: str) -> NotFound:
    return NotFound(f"task {task_id!r} not found", code="task_not_found")


def visible_to(task: TaskState, audience: Audience) -> bool:
    """May whoever has ``audience`` see (and so act on) ``task``? A producer (None) sees
    every task of its tenant; a person only those of the feeds they follow. Whoever may
    not is told "not found", never 403: the rule of every call that names a task."""
    return audience is None or task.feed in audience


def _check_actor(task: TaskState | None, task_id: str, audience: Audience) -> TaskState:
    if task is None or not visible_to(task, audience):
        raise _not_found(task_id)
    return task


def _moved(before: TaskState, after: TaskState, reason: str) -> tuple[Effect, ...]:
    """The effects of a running task changing feed (or staying in its feed)."""
    if after.key != before.key:
        return (
            Effect(before.key, EventType.REMOVED, reason, -1),
            Effect(after.key, EventType.ADDED, reason, +1),
        )
    return (Effect(before.key, EventType.UPDATED, None, 0),)


def _final_conflict(task: TaskState, verb: str) -> Conflict:
    return Conflict(
        f"task {task.id!r} is already {task.status}; it cannot be {verb}",
        code="illegal_transition",
        status=task.status,
    )


def create(
    body: TaskCreate, current: TaskState | None, now: datetime, tenant: str = DEFAULT_TENANT
) -> Outcome:
    digest = body_hash(body)
    if current is not None:
        if current.body_hash == digest:
            return Outcome(False, current, None)
        raise Conflict(
            f"task {body.id!r} already exists with a different body",
            code="task_id_conflict",
        )
    postponed = body.postponed_until is not None and body.postponed_until > now
    state = TaskState(
        tenant=tenant,
        id=body.id,
        owner=body.owner,
        role=body.role,
        acted_by=None,
        title=body.title,
        kind=body.kind.value,
        status=Status.POSTPONED if postponed else Status.RUNNING,
        process_instance_id=body.process.instance_id if body.process else None,
        process_name=body.process.name if body.process else None,
        record_entity=body.record.entity if body.record else None,
        record_id=body.record.id if body.record else None,
        record_title=body.record.title if body.record else None,
        url=body.url,
        postponed_until=body.postponed_until if postponed else None,
        created_at=now,
        updated_at=now,
        ended_at=None,
        body_hash=digest,
        due_at=body.due_at,
        priority=body.priority.value,
        actions=_actions_json(body.actions),
        follows=body.follows,
    )
    effects = () if postponed else (Effect(state.key, EventType.ADDED, "created", +1),)
    return Outcome(True, None, state, effects)


def update(task_id: str, patch: TaskPatch, current: TaskState | None, now: datetime) -> Outcome:
    task = _check_actor(current, task_id, None)
    fields = patch.model_fields_set
    if not fields:
        raise Unprocessable("a PATCH needs at least one field", code="empty_patch")
    if task.status in FINAL_STATUSES:
        raise _final_conflict(task, "changed")
    changes: dict[str, object] = {}
    if "title" in fields and patch.title is not None:
        changes["title"] = patch.title
    if "url" in fields:
        changes["url"] = patch.url
    if "record" in fields:
        rec = patch.record
        changes["record_entity"] = rec.entity if rec else None
        changes["record_id"] = rec.id if rec else None
        changes["record_title"] = rec.title if rec else None
    if "role" in fields:
        changes["role"] = patch.role
    if "owner" in fields:
        changes["owner"] = patch.owner
    owner = changes.get("owner", task.owner)
    if owner is None and changes.get("role", task.role) is None:
        raise Unprocessable(
            "a task needs an owner or a role: it cannot lose both", code="no_audience"
        )
    if "postponed_until" in fields:
        if task.status != Status.POSTPONED:
            raise Conflict(
                "only a postponed task can be rescheduled; use /postpone",
                code="illegal_transition",
                status=task.status,
            )
        if patch.postponed_until is None or patch.postponed_until <= now:
            raise Unprocessable("postponed_until must be in the future", code="bad_time")
        changes["postponed_until"] = patch.postponed_until
    if "due_at" in fields:
        changes["due_at"] = patch.due_at
        if patch.due_at != task.due_at:
            changes["overdue"] = False  # the clock flags it again when the new time passes
    if "priority" in fields and patch.priority is not None:
        changes["priority"] = patch.priority.value
    if "actions" in fields:
        changes["actions"] = _actions_json(patch.actions)
    changed = {k: v for k, v in changes.items() if getattr(task, k) != v}
    if not changed:
        return Outcome(False, task, None)
    state = replace(task, updated_at=now, acted_by=None, **changed)  # type: ignore[arg-type]
    effects: tuple[Effect, ...] = ()
    if task.status == Status.RUNNING:
        effects = _moved(task, state, "reassigned")
    return Outcome(False, task, state, effects)


def finish(
    task_id: str,
    final: Status,
    current: TaskState | None,
    now: datetime,
    actor: str | None = None,
    audience: Audience = None,
    outcome: str | None = None,
    comment: str | None = None,
) -> Outcome:
    """Complete or cancel. Repeating the same final transition is a no-op (200).

    Completing a task that has ``actions``: an ``outcome`` given must name one of them,
    a person must give one (a producer may not), and an action whose comment is
    ``required`` needs a comment that is not blank."""
    task = _check_actor(current, task_id, audience)
    if task.status == final:
        return Outcome(False, task, None)
    if task.status in FINAL_STATUSES:
        raise _final_conflict(task, "completed" if final == Status.COMPLETED else "canceled")
    if final == Status.COMPLETED:
        _check_decision(task, outcome, comment, actor)
    else:
        outcome = comment = None
    state = replace(
        task,
        status=final,
        postponed_until=None,
        updated_at=now,
        ended_at=now,
        acted_by=actor,
        outcome=outcome,
        comment=comment if comment and comment.strip() else None,
        completed_by=actor if final == Status.COMPLETED else None,
    )
    effects: tuple[Effect, ...] = ()
    if task.status == Status.RUNNING:
        effects = (Effect(task.key, EventType.REMOVED, final.value, -1),)
    return Outcome(False, task, state, effects)


def postpone(
    task_id: str,
    until: datetime,
    current: TaskState | None,
    now: datetime,
    actor: str | None = None,
    audience: Audience = None,
) -> Outcome:
    task = _check_actor(current, task_id, audience)
    if task.status in FINAL_STATUSES:
        raise _final_conflict(task, "postponed")
    if until <= now:
        raise Unprocessable("'until' must be in the future", code="bad_time")
    if task.status == Status.POSTPONED and task.postponed_until == until:
        return Outcome(False, task, None)
    state = replace(
        task, status=Status.POSTPONED, postponed_until=until, updated_at=now, acted_by=actor
    )
    effects: tuple[Effect, ...] = ()
    if task.status == Status.RUNNING:
        effects = (Effect(task.key, EventType.REMOVED, "postponed", -1),)
    return Outcome(False, task, state, effects)


def resume(
    task_id: str,
    current: TaskState | None,
    now: datetime,
    actor: str | None = None,
    audience: Audience = None,
) -> Outcome:
    """Bring a postponed task back to running (early by a person, or when it falls due)."""
    task = _check_actor(current, task_id, audience)
    if task.status == Status.RUNNING:
        return Outcome(False, task, None)
    if task.status in FINAL_STATUSES:
        raise _final_conflict(task, "resumed")
    state = replace(
        task, status=Status.RUNNING, postponed_until=None, updated_at=now, acted_by=actor
    )
    return Outcome(False, task, state, (Effect(task.key, EventType.ADDED, "resumed", +1),))


def claim(
    task_id: str,
    user: str,
    current: TaskState | None,
    now: datetime,
    actor: str | None,
    audience: Audience,
    claimer: frozenset[str],
) -> Outcome:
    """``user`` takes a queue task: it leaves the role's feed and enters theirs.

    ``claimer`` is the feeds ``user`` follows (they must be in the task's role); a
    person claims for themselves (``audience`` is then the same set)."""
    task = current
    if task is None or (
        audience is not None
        and task.feed not in audience
        and (task.role is None or role_feed(task.role) not in audience)
    ):
        raise _not_found(task_id)
    if task.role is None:
        raise Conflict(f"task {task_id!r} is not offered to a role", code="not_a_queue_task")
    if task.owner == user:
        return Outcome(False, task, None)
    if role_feed(task.role) not in claimer:
        if audience is not None:
            raise _not_found(task_id)  # a person outside the role sees nothing of its queue
        raise Unprocessable(f"{user!r} is not a member of role {task.role!r}", code="not_a_member")
    if task.status in FINAL_STATUSES:
        raise _final_conflict(task, "claimed")
    if task.owner is not None:
        raise Conflict(
            f"task {task_id!r} was already claimed by someone else", code="already_claimed"
        )
    state = replace(task, owner=user, updated_at=now, acted_by=actor)
    effects: tuple[Effect, ...] = ()
    if task.status == Status.RUNNING:
        effects = _moved(task, state, "claimed")
    return Outcome(False, task, state, effects)


def unclaim(
    task_id: str, current: TaskState | None, now: datetime, actor: str | None, audience: Audience
) -> Outcome:
    """Put a claimed queue task back into its role's queue (the claimer, or a producer)."""
    task = _check_actor(current, task_id, audience)
    if task.role is None:
        raise Conflict(f"task {task_id!r} is not offered to a role", code="not_a_queue_task")
    if task.owner is None:
        return Outcome(False, task, None)
    if task.status in FINAL_STATUSES:
        raise _final_conflict(task, "unclaimed")
    state = replace(task, owner=None, updated_at=now, acted_by=actor)
    effects: tuple[Effect, ...] = ()
    if task.status == Status.RUNNING:
        effects = _moved(task, state, "unclaimed")
    return Outcome(False, task, state, effects)


def _check_decision(
    task: TaskState, outcome: str | None, comment: str | None, actor: str | None
) -> None:
    if not task.actions:
        return
    if outcome is None:
        if actor is not None:
            raise Unprocessable(
                "this task is decided: give an 'outcome', one of its actions' ids",
                code="outcome_required",
            )
        return
    rule = task.action_rule(outcome)
    if rule is None:
        raise Unprocessable(
            f"outcome {outcome[:50]!r} is not one of this task's actions", code="unknown_outcome"
        )
    if rule == CommentRule.REQUIRED and not (comment and comment.strip()):
        raise Unprocessable(f"the action {outcome!r} needs a comment", code="comment_required")


def flag_overdue(task_id: str, current: TaskState | None, now: datetime) -> Outcome:
    """The due time passed: flag it once; a running task's feed gets one update."""
    task = _check_actor(current, task_id, None)
    if task.overdue or task.status in FINAL_STATUSES or task.due_at is None or task.due_at > now:
        return Outcome(False, task, None)
    state = replace(task, overdue=True)
    effects: tuple[Effect, ...] = ()
    if task.status == Status.RUNNING:
        effects = (Effect(task.key, EventType.UPDATED, "overdue", 0),)
    return Outcome(False, task, state, effects)


def _actions_json(actions: Sequence[Action] | None) -> str | None:
    if not actions:
        return None
    return orjson.dumps([a.model_dump(mode="json") for a in actions]).decode()


def decide(
    op: TaskOp,
    current: TaskState | None,
    now: datetime,
    audience: Audience = None,
    claimer: frozenset[str] = frozenset(),
) -> Outcome:
    """Route one operation to its rule. Raises ``ApiError`` when it is not allowed.

    ``audience``: the feeds the acting person follows (None for a producer or the
    clock); ``claimer``: for a claim, the feeds of the person who claims."""
    return with_postponed(op, _decide(op, current, now, audience, claimer))


# The reason of a ``task.removed`` that only moves a feed's postponed count, by operation.
_COUNTS_REASON = {
    "create": "created",
    "update": "reassigned",
    "complete": "completed",
    "cancel": "canceled",
    "claim": "claimed",
    "unclaim": "unclaimed",
}


def with_postponed(op: TaskOp, outcome: Outcome) -> Outcome:
    """``outcome`` with its effects carrying how each feed's postponed count moves: the
    move is put on the feed's own effect when there is one (a postpone or a resume),
    else it becomes a ``task.removed`` of 0 running (the feed's counts changed, its
    running tasks did not)."""
    if outcome.state is None:
        return outcome
    before = outcome.before
    moves = postponed_moves(
        Place(before.key, before.status) if before is not None else None,
        Place(outcome.state.key, outcome.state.status),
    )
    if not moves:
        return outcome
    effects = list(outcome.effects)
    for key, move in moves.items():
        at = next((i for i, e in enumerate(effects) if e.key == key), None)
        if at is not None:
            effects[at] = replace(effects[at], postponed=effects[at].postponed + move)
        else:
            reason = _COUNTS_REASON.get(op.kind, op.kind)
            effects.append(Effect(key, EventType.REMOVED, reason, 0, move))
    return replace(outcome, effects=tuple(effects))


def _decide(
    op: TaskOp,
    current: TaskState | None,
    now: datetime,
    audience: Audience,
    claimer: frozenset[str],
) -> Outcome:
    match op:
        case CreateTask(body=body, tenant=tenant):
            return create(body, current, now, tenant)
        case UpdateTask(id=task_id, patch=patch):
            return update(task_id, patch, current, now)
        case CompleteTask(id=task_id, actor=actor, outcome=outcome, comment=comment):
            return finish(
                task_id, Status.COMPLETED, current, now, actor, audience, outcome, comment
            )
        case CancelTask(id=task_id, actor=actor):
            return finish(task_id, Status.CANCELED, current, now, actor, audience)
        case PostponeTask(id=task_id, until=until, actor=actor):
            return postpone(task_id, until, current, now, actor, audience)
        case ResumeTask(id=task_id, actor=actor):
            return resume(task_id, current, now, actor, audience)
        case ClaimTask(id=task_id, user=user, actor=actor):
            return claim(task_id, user, current, now, actor, audience, claimer)
        case UnclaimTask(id=task_id, actor=actor):
            return unclaim(task_id, current, now, actor, audience)
        case FlagOverdue(id=task_id):
            return flag_overdue(task_id, current, now)
