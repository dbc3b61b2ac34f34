"""A WebSocket client made of bytes, for frames no library sends: unmasked, reserved
bits, bad close codes, a handshake with chosen headers; and a reader of the server's
frames as they are on the wire."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from urllib.parse import urlsplit

import orjson

TIMEOUT_S = 10.0


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """A frame as a client sends it (``length``: a header that claims another length)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    m = 0x80 if masked else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.head = b""
        self.body = b""

    @classmethod
    async def open(
        cls, ws_url: str, headers: dict[str, str] | None = None, path: str | None = None
    ) -> RawSocket:
        """Connect and send the upgrade; ``status``, ``head`` and (for a refusal)
        ``body`` hold the answer."""
        url = urlsplit(ws_url)
        assert url.hostname is not None and url.port is not None
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        sock = cls(reader, writer)
        fields = {
            "Host": f"{url.hostname}:{url.port}",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            **(headers or {}),
        }
        request = f"GET {path or url.path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in fields.items()
        )
        writer.write(request.encode() + b"\r\n")
        sock.head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_S)
        sock.status = int(sock.head.split(b" ")[1])
        if sock.status != 101:  # a refusal: its body, then the server closes
            sock.body = await asyncio.wait_for(reader.read(), TIMEOUT_S)
            writer.close()
        return sock

    def send(self, opcode: int, payload: bytes = b"", **kw: object) -> None:
        self.writer.write(client_frame(opcode, payload, **kw))  # type: ignore[arg-type]

    def send_json(self, message: object) -> None:
        self.send(0x1, orjson.dumps(message))

    async def frame(self, timeout: float = TIMEOUT_S) -> tuple[int, bytes] | None:
        """The server's next frame (opcode, payload), None at the end of the stream."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        except asyncio.IncompleteReadError:
            return None
        assert not head[1] & 0x80, "server frames are not masked"
        n = head[1] & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return head[0] & 0x0F, await self.reader.readexactly(n)

    async def message(self, timeout: float = TIMEOUT_S) -> dict[str, object]:
        """The next text message, skipping protocol pings."""
        while True:
            got = await self.frame(timeout)
            assert got is not None, "the server closed"
            if got[0] == 0x1:
                found: dict[str, object] = orjson.loads(got[1])
                return found
            assert got[0] == 0x9, got

    async def closed_with(self, timeout: float = TIMEOUT_S) -> tuple[int | None, str]:
        """Read until the server's close frame: (code, reason); (None, "") at the end
        of the stream without one."""
        while True:
            got = await self.frame(timeout)
            if got is None:
                return None, ""
            if got[0] == 0x8:
                (code,) = struct.unpack("!H", got[1][:2])
                return code, got[1][2:].decode()

    async def at_end(self, timeout: float = TIMEOUT_S) -> bool:
        """Whether the server closes the TCP connection within ``timeout``."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.writer.close()
