"""``Client`` (blocking) and ``AsyncClient`` (asyncio): the same calls (``Calls``),
sent with httpx, retried as their ``Retry`` says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping
from types import TracebackType

import httpx

from taskbell_client._core import Call, Calls, JSONObject, Retry, auth_headers, request, result
from taskbell_client.errors import ApiError


class Client(Calls[JSONObject]):
    """A producer's client: ``Client("https://taskbell.example", "producer-key")``.

    Each call returns the server's JSON object, or raises the ``ApiError`` subclass of
    its status (``NotFound``, ``Conflict``, ``Unprocessable``, ``RateLimited``, ...).
    Answers that say "later" (429, 503) are retried (``retry``). Use it as a context
    manager, or ``close()`` it. ``http``: an ``httpx.Client`` of your own (its base URL
    and headers are left alone)."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 10.0,
        retry: Retry | None = None,
        headers: Mapping[str, str] | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.retry = retry or Retry()
        self._own = http is None
        self.http = http or httpx.Client(base_url=base_url, timeout=timeout)
        self._headers = auth_headers(key, headers)

    def _call(self, call: Call) -> JSONObject:
        attempt = 1
        while True:
            req = request(self.http, call)
            req.headers.update(self._headers)
            try:
                return result(self.http.send(req))
            except ApiError as exc:
                wait = self.retry.delay(attempt, exc)
                if wait is None:
                    raise
            time.sleep(wait)
            attempt += 1

    def close(self) -> None:
        if self._own:
            self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient(Calls[Awaitable[JSONObject]]):
    """``Client`` for asyncio: the same calls, each to be awaited.
    ``async with AsyncClient(url, key) as tb: await tb.create_task(...)``."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        timeout: float = 10.0,
        retry: Retry | None = None,
        headers: Mapping[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.retry = retry or Retry()
        self._own = http is None
        self.http = http or httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._headers = auth_headers(key, headers)

    def _call(self, call: Call) -> Awaitable[JSONObject]:
        return self._send(call)

    async def _send(self, call: Call) -> JSONObject:
        attempt = 1
        while True:
            req = request(self.http, call)
            req.headers.update(self._headers)
            try:
                return result(await self.http.send(req))
            except ApiError as exc:
                wait = self.retry.delay(attempt, exc)
                if wait is None:
                    raise
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        if self._own:
            await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
