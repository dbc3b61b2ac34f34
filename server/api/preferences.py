"""Notification preferences (``server.preferences``): which channels may interrupt, muted
processes, quiet hours.

| call | who |
|---|---|
| ``GET /api/v1/me/preferences`` → the person's preferences (the defaults if never set) | user |
| ``PUT /api/v1/me/preferences`` ``Preferences`` → 200, what is now stored | user |
| ``GET /api/v1/users/{user}/preferences``, ``PUT`` the same | producer |

A PUT replaces the whole value (a field left out takes its default). Everything is
scoped to the caller's tenant: a producer names a person of its own tenant only, and the
same user id in another tenant is another person (with their own preferences).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON, body, producer, user
from server.api.tasks import path_id
from server.clock import now_utc
from server.preference_store import PreferenceStore
from server.preferences import Preferences
from server.wire import parse_body


def store(request: Request) -> PreferenceStore:
    found: PreferenceStore = request.app.state.delivery.preferences
    return found


async def _answer(request: Request, tenant: str, person: str) -> Response:
    prefs = await store(request).get(tenant, person)
    return JSON(prefs.model_dump(mode="json"))


async def _replace(request: Request, tenant: str, person: str) -> Response:
    prefs = parse_body(await body(request), Preferences)
    await store(request).put(tenant, person, prefs, now_utc())
    return JSON(prefs.model_dump(mode="json"))


async def get_mine(request: Request) -> Response:
    me = user(request)
    return await _answer(request, me.tenant, me.id)


async def put_mine(request: Request) -> Response:
    me = user(request)
    return await _replace(request, me.tenant, me.id)


async def get_theirs(request: Request) -> Response:
    tenant = producer(request)
    return await _answer(request, tenant, path_id(request, "user", "user"))


async def put_theirs(request: Request) -> Response:
    tenant = producer(request)
    return await _replace(request, tenant, path_id(request, "user", "user"))


routes = [
    Route("/api/v1/me/preferences", get_mine, methods=["GET"]),
    Route("/api/v1/me/preferences", put_mine, methods=["PUT"]),
    Route("/api/v1/users/{user}/preferences", get_theirs, methods=["GET"]),
    Route("/api/v1/users/{user}/preferences", put_theirs, methods=["PUT"]),
]
