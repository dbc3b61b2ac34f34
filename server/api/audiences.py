"""Audiences, as the producer manages them: role queues and their members, and
substitutions (who stands in for whom, when). Changes reach open sockets within about
a second (``feed.joined`` / ``feed.left``), on every instance."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON, body, parts, producer
from server.api.tasks import path_id
from server.errors import BadRequest, NotFound
from server.fields import is_name
from server.ops import AddSubstitution, EndSubstitution, SetMembers
from server.wire import Members, SubstitutionCreate, parse_body


def _role_id(request: Request) -> str:
    return path_id(request, "role", "role")


async def put_members(request: Request) -> Response:
    """Make the body's ``members`` the role's members (creating the role); 200 with the
    role. Repeating it changes nothing."""
    tenant = producer(request)
    role_id = _role_id(request)
    payload = parse_body(await body(request), Members)
    members = tuple(dict.fromkeys(payload.members))
    done = await parts(request).service.run(SetMembers(role_id, members, tenant))
    return JSON(done.role)


async def get_role(request: Request) -> Response:
    tenant = producer(request)
    role_id = _role_id(request)
    found = await parts(request).reads.role(tenant, role_id)
    if found is None:
        raise NotFound(f"role {role_id!r} not found", code="role_not_found")
    return JSON(found)


async def add_substitution(request: Request) -> Response:
    """201 with the substitution (200 for an identical repeat, 409 for the same id with
    other values). One whose period has begun is in force at once."""
    tenant = producer(request)
    req = parse_body(await body(request), SubstitutionCreate)
    op = AddSubstitution(req.id, req.user, req.substitute, req.starts_at, req.ends_at, tenant)
    done = await parts(request).service.run(op)
    return JSON(done.substitution.to_json(), status_code=201 if done.created else 200)


async def delete_substitution(request: Request) -> Response:
    tenant = producer(request)
    sub_id = path_id(request, "substitution_id", "substitution")
    gone = await parts(request).service.run(EndSubstitution(sub_id, tenant))
    return JSON({**gone.to_json(), "state": "deleted"})


async def list_substitutions(request: Request) -> Response:
    """Substitutions not yet ended; ``?user=`` those where that person is absent or
    stands in."""
    tenant = producer(request)
    user = request.query_params.get("user")
    if user is not None and not is_name(user):
        raise BadRequest("user must be a user id", code="bad_query")
    subs = await parts(request).reads.substitutions(tenant, user)
    return JSON({"substitutions": [s.to_json() for s in subs]})


routes = [
    Route("/api/v1/roles/{role}/members", put_members, methods=["PUT"]),
    Route("/api/v1/roles/{role}", get_role, methods=["GET"]),
    Route("/api/v1/substitutions", add_substitution, methods=["POST"]),
    Route("/api/v1/substitutions", list_substitutions, methods=["GET"]),
    Route("/api/v1/substitutions/{substitution_id}", delete_substitution, methods=["DELETE"]),
]
