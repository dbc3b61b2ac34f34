"""Subscribers: producers' webhook endpoints (and their delivery logs), people's Web
Push subscriptions, and the VAPID public key the panel subscribes with.

| call | who |
|---|---|
| ``POST /api/v1/webhooks`` ``{"url", "events"?, "owners"?, "description"?}`` → 201 | producer |
| ``GET /api/v1/webhooks``, ``GET/PATCH/DELETE /api/v1/webhooks/{id}`` | producer |
| ``GET /api/v1/webhooks/{id}/deliveries?status=&limit=&cursor=`` | producer |
| ``GET /api/v1/webhooks/{id}/deliveries/{delivery_id}`` | producer |
| ``POST /api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver`` → 202 | producer |
| ``GET /api/v1/push/config`` → ``{"enabled", "public_key"}`` | anyone |
| ``POST /api/v1/me/push-subscriptions`` (``PushSubscription.toJSON()``) → 201/200 | user |
| ``GET /api/v1/me/push-subscriptions``, ``DELETE /api/v1/me/push-subscriptions/{id}`` | user |

and ``GET /sw.js``, the service worker that shows and retracts the pushes (served from
the root so that its scope is the whole panel).

Every call is scoped to the caller's tenant (the producer key's, the token's ``tid``):
another tenant's endpoint, delivery or subscription answers exactly like a missing one.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from server.api.common import JSON, body, parts, producer, user
from server.clock import parse_instant
from server.delivery import egress
from server.delivery.queue import RowStatus
from server.delivery.side import Delivery
from server.delivery.webpush.subscriptions import check_keys
from server.delivery.wire import (
    EndpointCreate,
    EndpointCreatedJSON,
    EndpointPatch,
    PushSubscriptionBody,
)
from server.errors import BadRequest, NotFound, Unavailable, Unprocessable
from server.fields import whole_number
from server.paging import decode_cursor, encode_cursor
from server.wire import parse_body

_STATUSES = {s.value for s in RowStatus}
SERVICE_WORKER = Path(__file__).resolve().parents[2] / "web" / "sw.js"


def side(request: Request) -> Delivery:
    delivery: Delivery = request.app.state.delivery
    return delivery


def _path(request: Request, name: str, prefix: str, what: str) -> str:
    raw: str = request.path_params[name]
    if not raw.startswith(prefix + "_") or len(raw) > 40:
        raise NotFound(f"{what} {raw[:50]!r} not found", code=f"{what.replace(' ', '_')}_not_found")
    return raw


# ---------------------------------------------------------------- webhooks (producers)


async def create_endpoint(request: Request) -> Response:
    tenant = producer(request)
    payload = parse_body(await body(request), EndpointCreate)
    settings = parts(request).settings
    egress.check_url(payload.url, allow_private=settings.webhook_allow_private)
    endpoint = await side(request).endpoints.create(tenant, payload)
    out: EndpointCreatedJSON = {**endpoint.to_json(), "secret": endpoint.secret}
    return JSON(out, status_code=201)


async def list_endpoints(request: Request) -> Response:
    tenant = producer(request)
    endpoints = await side(request).endpoints.all(tenant)
    return JSON({"endpoints": [e.to_json() for e in endpoints]})


async def get_endpoint(request: Request) -> Response:
    tenant = producer(request)
    endpoint_id = _path(request, "endpoint_id", "ep", "webhook endpoint")
    return JSON((await side(request).endpoints.get(tenant, endpoint_id)).to_json())


async def patch_endpoint(request: Request) -> Response:
    tenant = producer(request)
    endpoint_id = _path(request, "endpoint_id", "ep", "webhook endpoint")
    payload = parse_body(await body(request), EndpointPatch)
    if not payload.model_fields_set:
        raise Unprocessable("a PATCH needs at least one field", code="empty_patch")
    if payload.url is not None:
        settings = parts(request).settings
        egress.check_url(payload.url, allow_private=settings.webhook_allow_private)
    return JSON((await side(request).endpoints.patch(tenant, endpoint_id, payload)).to_json())


async def delete_endpoint(request: Request) -> Response:
    tenant = producer(request)
    endpoint_id = _path(request, "endpoint_id", "ep", "webhook endpoint")
    await side(request).endpoints.delete(tenant, endpoint_id)
    return Response(status_code=204)


def _limit(raw: str | None) -> int:
    if raw is None:
        return 50
    if (value := whole_number(raw, 200)) is None or value < 1:
        raise BadRequest("limit must be a whole number from 1 to 200", code="bad_query")
    return value


async def list_deliveries(request: Request) -> Response:
    """The endpoint's delivery log, newest first; ``status`` filters (pending, delivered,
    failed, paused); ``next_cursor`` pages on."""
    tenant = producer(request)
    endpoint_id = _path(request, "endpoint_id", "ep", "webhook endpoint")
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in _STATUSES:
        raise BadRequest(f"status must be one of {', '.join(sorted(_STATUSES))}", code="bad_query")
    limit = _limit(q.get("limit"))
    rows = await side(request).endpoints.deliveries(
        tenant, endpoint_id, status=status, limit=limit, cursor=decode_cursor(q.get("cursor"))
    )
    next_cursor = None
    if len(rows) == limit:
        last = rows[-1]
        next_cursor = encode_cursor(parse_instant(last["created_at"]), last["id"])
    return JSON({"deliveries": rows, "next_cursor": next_cursor})


async def get_delivery(request: Request) -> Response:
    tenant = producer(request)
    endpoint_id = _path(request, "endpoint_id", "ep", "webhook endpoint")
    delivery_id = _path(request, "delivery_id", "msg", "delivery")
    return JSON(await side(request).endpoints.delivery(tenant, endpoint_id, delivery_id))


async def redeliver(request: Request) -> Response:
    """Send a delivery again (same ``webhook-id``), at once; 202 with the log entry."""
    tenant = producer(request)
    endpoint_id = _path(request, "endpoint_id", "ep", "webhook endpoint")
    delivery_id = _path(request, "delivery_id", "msg", "delivery")
    push = side(request)
    row = await push.endpoints.redeliver(tenant, endpoint_id, delivery_id)
    push.worker.kick()
    return JSON(row, status_code=202)


# ---------------------------------------------------------------- Web Push (people)


async def push_config(request: Request) -> Response:
    vapid = side(request).vapid
    return JSON({"enabled": vapid is not None, "public_key": vapid.public_key if vapid else None})


async def add_subscription(request: Request) -> Response:
    me = user(request)
    payload = parse_body(await body(request), PushSubscriptionBody)
    push = side(request)
    if push.vapid is None:
        raise Unavailable("Web Push is not configured on this server", code="push_disabled")
    settings = parts(request).settings
    egress.check_url(payload.endpoint, allow_private=settings.push_allow_private, what="endpoint")
    if not payload.endpoint.startswith("https://") and not settings.push_allow_private:
        raise Unprocessable("endpoint must be an https URL", code="bad_url")
    try:
        check_keys(payload)
    except ValueError:
        raise Unprocessable(
            "keys.p256dh must be a P-256 public key and keys.auth 16 bytes (base64url)",
            code="bad_keys",
        ) from None
    sub, created = await push.subscriptions.upsert(me.tenant, me.id, payload, me.locale)
    return JSON(sub.to_json(), status_code=201 if created else 200)


async def list_subscriptions(request: Request) -> Response:
    me = user(request)
    subs = await side(request).subscriptions.of(me.tenant, me.id)
    return JSON({"subscriptions": [s.to_json() for s in subs]})


async def delete_subscription(request: Request) -> Response:
    me = user(request)
    sub_id = _path(request, "subscription_id", "sub", "push subscription")
    await side(request).subscriptions.delete(me.tenant, me.id, sub_id)
    return Response(status_code=204)


async def service_worker(request: Request) -> Response:
    return FileResponse(
        SERVICE_WORKER, media_type="text/javascript", headers={"Cache-Control": "no-cache"}
    )


routes = [
    Route("/sw.js", service_worker, methods=["GET", "HEAD"]),
    Route("/api/v1/webhooks", create_endpoint, methods=["POST"]),
    Route("/api/v1/webhooks", list_endpoints, methods=["GET"]),
    Route("/api/v1/webhooks/{endpoint_id}", get_endpoint, methods=["GET"]),
    Route("/api/v1/webhooks/{endpoint_id}", patch_endpoint, methods=["PATCH"]),
    Route("/api/v1/webhooks/{endpoint_id}", delete_endpoint, methods=["DELETE"]),
    Route("/api/v1/webhooks/{endpoint_id}/deliveries", list_deliveries, methods=["GET"]),
    Route("/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}", get_delivery, methods=["GET"]),
    Route(
        "/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver",
        redeliver,
        methods=["POST"],
    ),
    Route("/api/v1/push/config", push_config, methods=["GET"]),
    Route("/api/v1/me/push-subscriptions", add_subscription, methods=["POST"]),
    Route("/api/v1/me/push-subscriptions", list_subscriptions, methods=["GET"]),
    Route(
        "/api/v1/me/push-subscriptions/{subscription_id}", delete_subscription, methods=["DELETE"]
    ),
]
