"""``GET /metrics``: this instance's figures in the Prometheus text format
(``server.metrics``).

Access: with no ``TASKBELL_METRICS_TOKEN`` it answers anyone (put it behind the network
you scrape from); with one, it wants ``Authorization: Bearer <that token>`` or a producer
key, else 401 JSON.
"""

from __future__ import annotations

import contextlib
import hmac

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import metrics
from server.api.common import parts
from server.auth import bearer, is_producer_key
from server.db import DATABASE_ERRORS
from server.delivery.queue import RowStatus
from server.delivery.side import Delivery
from server.delivery.tables import outbox_t
from server.errors import Unauthorized


def _allowed(request: Request) -> None:
    settings = parts(request).settings
    if not settings.metrics_token:
        return
    given = bearer(request.headers.get("authorization"))
    if hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
        return
    if not is_producer_key(settings, given):
        raise Unauthorized("unknown metrics token", code="invalid_metrics_token")


async def _outbox_pending(delivery: Delivery) -> int:
    async with delivery.outbox.engines.reader.connect() as conn:
        query = select(func.count()).where(outbox_t.c.status == RowStatus.PENDING.value)
        return int((await conn.execute(query)).scalar_one())


async def scrape(request: Request) -> Response:
    _allowed(request)
    m = metrics.of(request.app)
    # The database away: the last figure stays (readyz says so).
    with contextlib.suppress(*DATABASE_ERRORS):
        m.outbox_pending.set(await _outbox_pending(request.app.state.delivery))
    data = generate_latest(m.registry)
    return Response(
        data,
        media_type=CONTENT_TYPE_LATEST,
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


routes = [Route("/metrics", scrape, methods=["GET"])]
