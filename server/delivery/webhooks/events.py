"""Webhook events from task changes, as plain functions on values (no I/O).

Each applied operation that changed a task is one event, whatever it did to feeds
(completing a postponed task removes nothing from a panel, but the engine must hear
of it). Payload::

    {"type": "task.completed", "timestamp": "2026-11-28T10:00:00.000000Z",
     "data": {"tenant": "default", <task JSON>, "actor": "alice" | null,
              "previous_owner": ... (reassigned, unclaimed)}}

``actor`` is the person who acted, or null when a producer (or the server's clock) did.
An event belongs to the task's tenant and goes only to that tenant's endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypedDict

from server.ops import TaskOp
from server.transitions import Outcome
from server.wire import TaskJSON, dumps, iso


class WebhookEventType(StrEnum):
    CREATED = "task.created"
    UPDATED = "task.updated"
    REASSIGNED = "task.reassigned"
    COMPLETED = "task.completed"
    CANCELED = "task.canceled"
    POSTPONED = "task.postponed"
    RESUMED = "task.resumed"
    CLAIMED = "task.claimed"
    UNCLAIMED = "task.unclaimed"


ALL_EVENT_TYPES = tuple(t.value for t in WebhookEventType)

_BY_KIND = {
    "create": WebhookEventType.CREATED,
    "complete": WebhookEventType.COMPLETED,
    "cancel": WebhookEventType.CANCELED,
    "postpone": WebhookEventType.POSTPONED,
    "resume": WebhookEventType.RESUMED,
    "claim": WebhookEventType.CLAIMED,
    "unclaim": WebhookEventType.UNCLAIMED,
}


class EventData(TaskJSON):
    tenant: str
    actor: str | None
    previous_owner: str | None


class WebhookPayload(TypedDict):
    type: str
    timestamp: str
    data: EventData


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """One event of ``tenant``, encoded once; ``owners`` are the owners it concerns
    (both, when a task was reassigned; the claimer, when claimed or unclaimed; none for a
    role task nobody holds), for endpoints that filter by owner."""

    type: WebhookEventType
    tenant: str
    task_id: str
    owners: frozenset[str]
    body: str


def event_type(op: TaskOp, outcome: Outcome) -> WebhookEventType:
    if op.kind == "update":
        before, after = outcome.before, outcome.state
        if before is not None and after is not None and before.owner != after.owner:
            return WebhookEventType.REASSIGNED
        return WebhookEventType.UPDATED
    return _BY_KIND[op.kind]


def build_event(op: TaskOp, outcome: Outcome, now: datetime) -> WebhookEvent | None:
    """The event for one applied change, or None when nothing changed (a repeat)."""
    state = outcome.state
    if state is None:
        return None
    kind = event_type(op, outcome)
    before = outcome.before
    previous = before.owner if before is not None and before.owner != state.owner else None
    data: EventData = {
        "tenant": state.tenant,
        **state.to_json(),
        "actor": op.actor,
        "previous_owner": previous,
    }
    payload: WebhookPayload = {"type": kind.value, "timestamp": iso(now) or "", "data": data}
    owners = frozenset(o for o in (state.owner, previous) if o is not None)
    return WebhookEvent(kind, state.tenant, state.id, owners, dumps(payload))


def wants(
    event: WebhookEvent, tenant: str, types: frozenset[str], owners: frozenset[str] | None
) -> bool:
    """Whether an endpoint of ``tenant`` subscribed to ``types`` (and ``owners``, None =
    all) gets it. Never another tenant's event. An owner filter matches the task's owner
    or previous owner: a role task nobody holds (created, updated, or completed by a
    member without claiming it) concerns no owner, so only endpoints without an owner
    filter get it."""
    if event.tenant != tenant or event.type.value not in types:
        return False
    return owners is None or bool(event.owners & owners)
