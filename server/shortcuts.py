"""``Shortcuts``: the producer's hottest calls, matched in the gate before Starlette's
router, with the very answers the router would give.

A change sent one per request (``POST /api/v1/tasks``, ``POST .../{id}/complete``)
otherwise passes Starlette's exception layer, the router's scan of every route in front
of the task routes (a regular expression each), the route's own exception layer and
two more ``send`` wrappers, about a tenth of what the edge spends on it. Here a request
whose method and path one of the given routes takes (compared in the router's order,
with the router's rule for a ``{name}`` segment: one or more characters, no ``/``) goes
straight to that route's endpoint; an error it raises meets the app's exception
handlers, looked up as Starlette looks them up, and one without a handler goes on up to
``ServerErrorMiddleware`` (a 500) as before. Anything else (another method on these
paths, so a 405 with ``Allow``; a path with a root path; another path) goes to the
router unchanged.

Only routes that come before every other route that could take the same request may be
given (``tests/test_shortcuts.py`` checks the app's against its router).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _Path:
    """One route: a fixed path (``name`` None) or ``prefix{name}suffix``."""

    route: Route
    endpoint: Endpoint
    methods: frozenset[str]
    prefix: str
    name: str | None
    suffix: str

    def params(self, path: str) -> dict[str, Any] | None:
        """The path parameters when ``path`` is this route's, else None."""
        if self.name is None:
            return {} if path == self.prefix else None
        prefix, suffix = self.prefix, self.suffix
        if len(path) <= len(prefix) + len(suffix):
            return None
        if not path.startswith(prefix) or not path.endswith(suffix):
            return None
        value = path[len(prefix) : len(path) - len(suffix)]
        return None if "/" in value else {self.name: value}


def _path_of(route: Route) -> _Path:
    template = route.path
    prefix, brace, rest = template.partition("{")
    name, _, suffix = rest.partition("}")
    if ("{" in suffix) or (brace and (not name.isidentifier() or not prefix.endswith("/"))):
        raise ValueError(f"a shortcut takes at most one plain {{name}} segment: {template}")
    methods = frozenset(route.methods or ())
    if not methods or not inspect.iscoroutinefunction(route.endpoint):
        raise ValueError(f"a shortcut needs an async function and methods: {template}")
    return _Path(route, route.endpoint, methods, prefix, name if brace else None, suffix)


class Shortcuts:
    """``routes`` (Starlette ``Route``s in the router's order) matched without the
    router; ``handlers`` the app's exception handlers (an ``Exception`` one is left to
    ``ServerErrorMiddleware``, as Starlette does)."""

    def __init__(
        self, routes: Iterable[Route], handlers: Mapping[Any, Callable[..., Awaitable[Response]]]
    ) -> None:
        self.routes = tuple(routes)
        self.paths = tuple(_path_of(route) for route in self.routes)
        self.handlers = {k: v for k, v in handlers.items() if k not in (500, Exception)}
        if any(isinstance(k, int) for k in self.handlers):
            raise ValueError("status-code handlers are not taken by shortcuts")
        # The shortest common start of every path: most requests are told apart by it.
        starts = [p.prefix for p in self.paths]
        common = min(starts, default="")
        for start in starts:
            while not start.startswith(common):
                common = common[:-1]
        self.start = common

    def match(self, scope: Scope) -> tuple[_Path, dict[str, Any]] | None:
        """The route that takes this request and its path parameters, or None (the
        router decides)."""
        path: str = scope["path"]
        if not path.startswith(self.start) or scope.get("root_path"):
            return None
        method = scope["method"]
        for candidate in self.paths:
            if method in candidate.methods:
                params = candidate.params(path)
                if params is not None:
                    return candidate, params
        # Not one of these (or only by path, another method: the router answers 405
        # unless a later route takes it).
        return None

    async def run(
        self, hit: tuple[_Path, dict[str, Any]], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """What the router, the route and Starlette's exception layers would do."""
        target, params = hit
        scope["route"] = target.route
        scope["endpoint"] = target.endpoint
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await target.endpoint(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
            # Reused exception instances would gather tracebacks across requests.
            exc.__traceback__ = None
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Callable[..., Awaitable[Response]] | None:
        for cls in type(exc).__mro__:
            found = self.handlers.get(cls)
            if found is not None:
                return found
        return None
