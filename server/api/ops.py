"""Operations: liveness and readiness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON, parts
from server.errors import ApiError


async def healthz(request: Request) -> Response:
    """200 while the process lives."""
    return JSON({"status": "ok"})


async def readyz(request: Request) -> Response:
    """200 only while the database and the broker are reachable; else 503 saying which."""
    p = parts(request)
    checks: dict[str, str] = {}
    try:
        await p.reads.ping()
        checks["database"] = "ok"
    except ApiError:
        checks["database"] = "unreachable"
    checks["broker"] = "ok" if p.broker.healthy else "unreachable"
    if not p.ready:
        checks["startup"] = "in progress"
    ok = all(v == "ok" for v in checks.values())
    body = {
        "status": "ready" if ok else "not ready",
        "checks": checks,
        "broker": p.broker.describe(),
        "connections": p.hub.connection_count,
    }
    return JSON(body, status_code=200 if ok else 503)


routes = [
    Route("/healthz", healthz, methods=["GET", "HEAD"]),
    Route("/readyz", readyz, methods=["GET", "HEAD"]),
]
