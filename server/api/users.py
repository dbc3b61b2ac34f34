"""People, as the producer (the host application) manages them: revoking a person's
tokens (a lost laptop, a person who left)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON, parts, producer
from server.api.tasks import path_id
from server.ops import RevokeUser
from server.wire import iso


async def revoke(request: Request) -> Response:
    """Refuse every token of the person issued up to now (401 ``token_revoked``) and
    close their sockets and event streams on every instance (4001 ``revoked``) within
    a few seconds. Repeating it moves the moment forward."""
    tenant = producer(request)
    p = parts(request)
    user = path_id(request, "user", "user")
    at = await p.service.run(RevokeUser(user, tenant))
    p.revocations.note(tenant, user, at)
    return JSON({"user": user, "revoked_at": iso(at)})


routes = [Route("/api/v1/users/{user}/revoke", revoke, methods=["POST"])]
