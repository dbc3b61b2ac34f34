"""A small Server-Sent Events client for tests (httpx streaming), parsing the format as
browsers do: ``id``, ``event``, ``data`` fields, comment lines, a blank line ends an
event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


@dataclass(frozen=True)
class Event:
    id: str | None
    event: str | None
    data: dict[str, Any]


class SseStream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self.retry: int | None = None
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> Event:
        """The next event (comments and ``retry`` are recorded on the way)."""
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> Event:
        fields: dict[str, str] = {}
        async for line in self._lines:
            if line == "":
                if "data" in fields:
                    return Event(
                        fields.get("id"), fields.get("event"), orjson.loads(fields["data"])
                    )
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "retry":
                self.retry = int(value)
            else:
                fields[name] = value
        raise EOFError("the stream ended")

    async def until(self, kind: str, timeout: float = 10.0) -> list[Event]:
        """Events up to and including the first of type ``kind``."""
        out: list[Event] = []
        while True:
            event = await self.next(timeout)
            out.append(event)
            if event.event == kind:
                return out


@contextlib.asynccontextmanager
async def open_stream(
    base_url: str,
    *,
    token: str | None = None,
    in_query: bool = False,
    last_event_id: int | str | None = None,
    since: int | None = None,
    path: str = "/events",
) -> AsyncIterator[SseStream]:
    headers: dict[str, str] = {"Accept": "text/event-stream"}
    params: dict[str, str] = {}
    if token is not None and in_query:
        params["token"] = token
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    if since is not None:
        params["since"] = str(since)
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
        client.stream("GET", path, headers=headers, params=params) as response,
    ):
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseStream(response)
