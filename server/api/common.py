"""What every endpoint shares: JSON responses, the app's parts, who is calling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server.auth import User, bearer, is_producer_key, verify_token
from server.broker import Broker
from server.errors import PayloadTooLarge, Unauthorized
from server.hub import Hub
from server.service import Service
from server.settings import Settings
from server.store import Store


@dataclass
class Parts:
    """Everything an endpoint may use; built by the app's lifespan."""

    settings: Settings
    store: Store
    broker: Broker
    hub: Hub
    service: Service
    ready: bool = False


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def parts(request: Request) -> Parts:
    p: Parts = request.app.state.parts
    return p


def producer(request: Request) -> None:
    """Raises ``Unauthorized`` unless the caller holds a producer key."""
    settings = parts(request).settings
    key = bearer(request.headers.get("authorization"))
    if not is_producer_key(settings, key):
        raise Unauthorized("unknown producer key", code="invalid_producer_key")


def user(request: Request) -> User:
    """Raises ``Unauthorized`` unless the caller holds a valid user token."""
    return verify_token(parts(request).settings, bearer(request.headers.get("authorization")))


def actor(request: Request) -> str | None:
    """None for a producer, the user id for a person; raises ``Unauthorized`` otherwise."""
    settings = parts(request).settings
    token = bearer(request.headers.get("authorization"))
    if is_producer_key(settings, token):
        return None
    return verify_token(settings, token).id


async def body(request: Request) -> bytes:
    limit = parts(request).settings.max_body_bytes
    data = await request.body()
    if len(data) > limit:
        raise PayloadTooLarge(f"the body is over {limit} bytes")
    return data
