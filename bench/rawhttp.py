"""A minimal keep-alive HTTP/1.1 client for driving the producer API.

Why not httpx: on the single core the load generator is pinned to, httpx spends several
hundred microseconds per request in its own layers, which would make the *client* the
bottleneck at the rates the benchmark is meant to reach. This client writes one request
at a time on one persistent connection and reads one response (Content-Length or chunked);
the load generator runs many of them side by side. It speaks only what the producer API
needs: JSON bodies, no redirects, no TLS, no pipelining.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson

_MAX_HEADER_BYTES = 64 * 1024


class HttpError(Exception):
    """The connection broke or the server answered something that is not HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body) if self.body else None


def split_base_url(url: str) -> tuple[str, int, str]:
    """Return (host, port, path prefix) of an ``http://host:port/prefix`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"only plain http:// URLs are supported, got {url!r}")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


class Connection:
    """One persistent HTTP/1.1 connection; reconnects lazily after the server closes it."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self._host, self._port, self._prefix = split_base_url(base_url)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._fixed_headers = (
            f"Host: {self._host}:{self._port}\r\nContent-Type: application/json\r\n{extra}"
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, payload: object = None, headers: bytes = b""
    ) -> Response:
        """Send one request and read its whole response. ``headers``: extra header
        lines for this request only, each ending in CRLF (a per-user token, say).

        Raises HttpError if the connection fails; the next call opens a new one.
        """
        body = b"" if payload is None else orjson.dumps(payload)
        head = (
            f"{method} {self._prefix}{path} HTTP/1.1\r\n".encode()
            + self._fixed_headers
            + headers
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        reader, writer = await self._ensure_open()
        try:
            writer.write(head + body)
            response, keep_alive = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            await self.close()
            raise HttpError(f"{method} {path}: {exc!r}") from exc
        if not keep_alive:
            await self.close()
        return response

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _ensure_open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    self._host, self._port, limit=_MAX_HEADER_BYTES
                )
            except OSError as exc:
                raise HttpError(f"connect {self._host}:{self._port}: {exc!r}") from exc
        return self._reader, self._writer


async def _read_response(reader: asyncio.StreamReader) -> tuple[Response, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
        raise HttpError(f"not an HTTP/1.x response: {lines[0]!r}")
    status = int(status_line[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    keep_alive = headers.get("connection", "").lower() != "close"
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:  # body delimited by close
        body = await reader.read()
        keep_alive = False
    return Response(status, body), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # Trailers (if any) end with an empty line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
