"""The wire format of the delivery side: request bodies and responses of webhook endpoints
and push subscriptions, and the Web Push payload. (Task and feed messages are in
``server.wire``; this module only adds to them.)"""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from pydantic import Field, StringConstraints, field_validator

from server.delivery.webhooks.events import ALL_EVENT_TYPES
from server.fields import Owner
from server.wire import _Strict

HttpUrl = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Description = Annotated[str, StringConstraints(max_length=500)]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=40)]
B64Url = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_\-=]+$")
]


def _check_events(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = sorted(set(value) - set(ALL_EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {list(ALL_EVENT_TYPES)}")
    return sorted(set(value))


class EndpointCreate(_Strict):
    """Body of ``POST /webhooks``. ``events`` defaults to all; ``owners`` null = all."""

    url: HttpUrl
    events: Annotated[list[EventName], Field(min_length=1, max_length=20)] = list(ALL_EVENT_TYPES)
    owners: Annotated[list[Owner], Field(min_length=1, max_length=1000)] | None = None
    description: Description = ""

    _events = field_validator("events")(_check_events)


class EndpointPatch(_Strict):
    """Body of ``PATCH /webhooks/{id}``: any subset. ``enabled: true`` re-enables a
    disabled endpoint and resumes its paused deliveries."""

    url: HttpUrl | None = None
    events: Annotated[list[EventName], Field(min_length=1, max_length=20)] | None = None
    owners: Annotated[list[Owner], Field(min_length=1, max_length=1000)] | None = None
    description: Description | None = None
    enabled: bool | None = None

    _events = field_validator("events")(_check_events)


class PushKeys(_Strict):
    p256dh: B64Url
    auth: B64Url


class PushSubscriptionBody(_Strict):
    """Body of ``POST /me/push-subscriptions``: the browser's ``PushSubscription.toJSON()``."""

    endpoint: HttpUrl
    expirationTime: int | float | None = None
    keys: PushKeys


class EndpointJSON(TypedDict):
    id: str
    url: str
    events: list[str]
    owners: list[str] | None
    description: str
    enabled: bool
    disabled_reason: str | None
    disabled_at: str | None
    created_at: str
    updated_at: str


class EndpointCreatedJSON(EndpointJSON):
    secret: str


class DeliveryJSON(TypedDict):
    id: str
    event_type: str
    task_id: str
    status: str
    attempts: int
    created_at: str
    last_attempt_at: str | None
    next_attempt_at: str | None
    delivered_at: str | None
    last_status: int | None
    last_error: str | None
    payload: object


class SubscriptionJSON(TypedDict):
    id: str
    endpoint: str
    created_at: str


class PushTask(TypedDict):
    id: str
    title: str
    status: str
    process: str | None
    url: str | None


class PushNotification(TypedDict):
    """The words the service worker shows, in the subscriber's language (``lang``)."""

    title: str
    body: str
    lang: str


class PushPayload(TypedDict):
    """What the service worker receives (kept well under the 4 KiB push limit)."""

    type: Literal["task.added", "task.updated", "task.removed"]
    seq: int
    count: int
    reason: str | None
    task: PushTask
    notification: PushNotification
