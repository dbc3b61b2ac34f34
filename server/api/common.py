"""What every endpoint shares: JSON responses, the app's parts, who is calling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from server import logs
from server.auth import User, VerifiedTokens, bearer, producer_tenant, verify_token
from server.broker import Broker
from server.errors import Forbidden, PayloadTooLarge, Unauthorized, UnsupportedMediaType
from server.hub import Hub
from server.reads import Reads
from server.revocations import Revocations
from server.service import Service
from server.settings import Settings

# Where the gate (``server.gate``) leaves the credential it checked, in the ASGI scope.
CHECKED = "taskbell.checked"


@dataclass(frozen=True, slots=True)
class Checked:
    """Whom the gate found calling, so that the endpoint does not verify the same token
    again: the bearer credential it read, and the person its token names (None: a
    producer key, of ``tenant``). Only there when the gate checked the credential
    (rate-limited paths while a limit is on); the endpoint still checks revocation, and
    uses it only for the very credential it reads itself."""

    credential: str
    user: User | None
    tenant: str | None = None  # a producer key's


@dataclass
class Parts:
    """Everything an endpoint may use; built by the app's lifespan."""

    settings: Settings
    reads: Reads
    broker: Broker
    hub: Hub
    service: Service
    revocations: Revocations
    tokens: VerifiedTokens | None = None  # the edge's (limits.Edge.subjects): one cache
    ready: bool = False

    def authenticate(self, token: str) -> User:
        """The person a user token names. Raises ``Unauthorized`` for a token that is
        not valid, has expired, or was revoked."""
        who = (
            verify_token(self.settings, token) if self.tokens is None else self.tokens.verify(token)
        )
        return self.revocations.check(who)


_JSON_HEADERS = (
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
)


class JSON(Response):
    """Every API answer: JSON, never sniffed as something else, never cached (answers
    carry people's tasks; the headers are set here so that even a 500 has them)."""

    media_type = "application/json"

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        status = self.status_code
        usual = headers is None and self.media_type == "application/json"
        if usual and status >= 200 and status not in (204, 304):
            # Starlette's two headers and ours, as below, without looking for them.
            length = (b"content-length", str(len(self.body)).encode())
            self.raw_headers = [length, *_JSON_HEADERS]
            return
        super().init_headers(headers)
        present = {name for name, _ in self.raw_headers}
        if b"cache-control" not in present:
            self.raw_headers.append((b"cache-control", b"no-store"))
        if b"x-content-type-options" not in present:
            self.raw_headers.append((b"x-content-type-options", b"nosniff"))

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def parts_of(app: Any) -> Parts:
    """The running app's parts (set at start-up)."""
    p: Parts = app.state.parts
    return p


def parts(request: Request) -> Parts:
    return parts_of(request.app)


def checked(request: Request, credential: str) -> Checked | None:
    """The gate's ``Checked`` when it checked this very ``credential``, else None."""
    found: Checked | None = request.scope.get(CHECKED)
    return found if found is not None and found.credential == credential else None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls: a producer of ``tenant`` (``user`` None), or that person."""

    tenant: str
    user: str | None


def _key_tenant(request: Request, token: str) -> str | None:
    """The tenant of producer key ``token`` (the gate's ``Checked`` when it looked it up
    already), or None when it is none."""
    known = checked(request, token)
    if known is not None:
        return known.tenant
    return producer_tenant(parts(request).settings, token)


def producer(request: Request) -> str:
    """The tenant of the caller's producer key; raises ``Unauthorized`` unless the caller
    holds one."""
    tenant = _key_tenant(request, bearer(request.headers.get("authorization")))
    if tenant is None:
        raise Unauthorized("unknown producer key", code="invalid_producer_key")
    logs.tenant.set(tenant)
    return tenant


def _person(request: Request, token: str) -> User:
    """The person a user token names (checked once per request: the gate's ``Checked``
    when it verified it already), not revoked; their tenant goes into the log lines."""
    known = checked(request, token)
    p = parts(request)
    if known is not None and known.user is not None:
        who = p.revocations.check(known.user)
    else:
        who = p.authenticate(token)
    logs.tenant.set(who.tenant)
    return who


def user(request: Request) -> User:
    """Raises ``Unauthorized`` unless the caller holds a valid user token (not revoked)."""
    return _person(request, bearer(request.headers.get("authorization")))


def actor(request: Request) -> Caller:
    """A producer (``user`` None) or a person; raises ``Unauthorized`` otherwise."""
    token = bearer(request.headers.get("authorization"))
    tenant = _key_tenant(request, token)
    if tenant is not None:
        logs.tenant.set(tenant)
        return Caller(tenant, None)
    who = _person(request, token)
    return Caller(who.tenant, who.id)


def process_admin(request: Request) -> Caller:
    """A producer (``user`` None), or a person whose token carries the ``process-admin``
    role, each in their own tenant. Raises ``Unauthorized`` without valid credentials and
    ``Forbidden`` (``process_admin_required``) for a person without the role: decided
    from the token alone, before anything is looked up, so the answer is the same for
    an instance that exists, one that does not and another tenant's: it tells nothing."""
    token = bearer(request.headers.get("authorization"))
    tenant = _key_tenant(request, token)
    if tenant is not None:
        logs.tenant.set(tenant)
        return Caller(tenant, None)
    who = _person(request, token)
    if not who.is_process_admin:
        raise Forbidden(
            "this needs the process-admin role in the user token", code="process_admin_required"
        )
    return Caller(who.tenant, who.id)


def is_json_type(content_type: str | None) -> bool:
    """No Content-Type at all (curl's examples send none) or a JSON one:
    ``application/json`` or ``application/<something>+json``, any parameters."""
    if content_type is None:
        return True
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def body(request: Request) -> bytes:
    """The request body. Raises ``PayloadTooLarge`` over the limit and
    ``UnsupportedMediaType`` for a body whose Content-Type is not JSON."""
    limit = parts(request).settings.max_body_bytes
    data = await request.body()
    if len(data) > limit:
        raise PayloadTooLarge(f"the body is over {limit} bytes")
    if data and not is_json_type(request.headers.get("content-type")):
        raise UnsupportedMediaType(
            "request bodies are JSON: send Content-Type: application/json (or none)"
        )
    return data
