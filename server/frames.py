"""RFC 6455, the server's side, without I/O: the handshake's answer, a parser for the
frames a client sends, and the frames the server sends (``server.wsserver`` is the
socket around it).

A client's frames must be masked; the server's are not, so one encoded frame is the
same bytes for every socket it goes to (the hub frames an event once). No extension is
ever negotiated (per-message deflate would cost ~40 KB of zlib state per socket), so
every RSV bit is a protocol error. Parse errors raise ``FrameError`` with the close
code the socket must be closed with: 1002 protocol error, 1007 text that is not UTF-8,
1009 a message over the size limit (refused from its header, before its payload is
buffered).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import NamedTuple

import orjson

# websockets' C helper (websockets is a dependency anyway: the client, the stock path)
from websockets.speedups import apply_mask as _apply_mask

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = frozenset({CONT, TEXT, BINARY})
_CONTROL = frozenset({CLOSE, PING, PONG})

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
TOO_BIG = 1009
NO_STATUS = 1005  # a close frame without a code (never sent on the wire)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class FrameError(Exception):
    """The client broke the protocol: close the socket with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# ---------------------------------------------------------------------- the handshake


class Request(NamedTuple):
    """An HTTP request's head: ``target`` is the path with its query string, header
    names are lower case."""

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


def parse_request(data: bytes) -> Request | None:
    """The request head at the start of ``data``, None while it is incomplete. Raises
    ``ValueError`` for one that is not HTTP."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    method, target, version = lines[0].decode("latin-1").split(" ")
    if not version.startswith("HTTP/"):
        raise ValueError("not an HTTP request")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError("a header line without a colon")
        headers.append((name.strip().lower(), value.strip()))
    return Request(method, target, headers)


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def _tokens(request: Request, name: bytes) -> set[bytes]:
    return {t.strip().lower() for k, v in request.headers if k == name for t in v.split(b",")}


def http_response(
    status: int, phrase: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    head = [f"HTTP/1.1 {status} {phrase}\r\n".encode()]
    head += [name + b": " + value + b"\r\n" for name, value in headers]
    return b"".join(head) + b"connection: close\r\n\r\n" + body


def error_response(
    status: int, phrase: str, code: str, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> bytes:
    """A refused handshake: the API's usual JSON error body."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
        *extra,
    ]
    return http_response(status, phrase, headers, body)


def handshake(request: Request) -> tuple[bool, bytes]:
    """(accepted?, the answer's bytes) for an upgrade request: 101 with
    ``Sec-WebSocket-Accept``, or 400 / 426 with a JSON error body."""
    if request.method != "GET":
        return False, error_response(400, "Bad Request", "bad_handshake", "the method must be GET")
    if b"upgrade" not in _tokens(request, b"connection"):
        return False, _upgrade_required("the Connection header must include Upgrade")
    if b"websocket" not in _tokens(request, b"upgrade"):
        return False, _upgrade_required("the Upgrade header must be websocket")
    keys = [v for k, v in request.headers if k == b"sec-websocket-key"]
    if len(keys) != 1 or not _valid_key(keys[0]):
        return False, error_response(
            400, "Bad Request", "bad_handshake", "Sec-WebSocket-Key must be one 16-byte nonce"
        )
    versions = [v for k, v in request.headers if k == b"sec-websocket-version"]
    if versions != [b"13"]:
        return False, _upgrade_required(
            "Sec-WebSocket-Version must be 13", ((b"sec-websocket-version", b"13"),)
        )
    return True, (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: " + accept_key(keys[0]) + b"\r\n\r\n"
    )


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def _upgrade_required(message: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    return error_response(
        426, "Upgrade Required", "upgrade_required", message, ((b"upgrade", b"websocket"), *extra)
    )


# ---------------------------------------------------------------------- server frames


def encode(opcode: int, payload: bytes = b"") -> bytes:
    """One unmasked, final frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def text(message: str) -> bytes:
    return encode(TEXT, message.encode())


def close(code: int, reason: str = "") -> bytes:
    """A close frame; the reason is cut to fit the 125 bytes of a control frame."""
    raw = reason.encode()[:123]
    while True:  # do not cut a character in two
        try:
            raw.decode()
            break
        except UnicodeDecodeError:
            raw = raw[:-1]
    return encode(CLOSE, struct.pack("!H", code) + raw)


PING_FRAME = encode(PING)


def close_payload(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a client's close frame (1005: none given)."""
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "a close frame of one byte")
    (code,) = struct.unpack("!H", payload[:2])
    if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise FrameError(PROTOCOL_ERROR, f"close code {code} is not allowed")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(INVALID_DATA, "the close reason is not UTF-8") from None
    return code, reason


# ---------------------------------------------------------------------- client frames


class Parser:
    """A client's frames, fed as they arrive (``feed``), taken out one message or
    control frame at a time (``next``): (opcode, payload), where a TEXT payload is
    valid UTF-8 and a fragmented message comes out whole (opcode TEXT or BINARY)."""

    __slots__ = ("_at", "_buf", "_kind", "_parts", "_size", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # the most bytes a message may have
        self._buf = b""
        self._at = 0  # where the next frame starts in ``_buf`` (a frame taken is not
        # cut off the buffer: many small frames in one chunk would copy it each time)
        self._kind = 0  # the opcode of a fragmented message in progress, 0: none
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        if self._at < len(self._buf):
            self._buf = self._buf[self._at :] + data
        else:
            self._buf = data
        self._at = 0

    @property
    def buffered(self) -> int:
        """How many received bytes wait to be parsed."""
        return len(self._buf) - self._at

    def next(self) -> tuple[int, bytes] | None:
        """The next message or control frame, or None until more bytes arrive."""
        buf = self._buf
        size = len(buf)
        while True:
            start = self._at
            if size - start < 2:
                return None
            b0, b1 = buf[start], buf[start + 1]
            fin, opcode = b0 & 0x80, b0 & 0x0F
            if b0 & 0x70:
                raise FrameError(PROTOCOL_ERROR, "reserved bits set")
            if not b1 & 0x80:
                raise FrameError(PROTOCOL_ERROR, "client frames must be masked")
            n = b1 & 0x7F
            at = start + 2
            if opcode in _CONTROL:
                if not fin:
                    raise FrameError(PROTOCOL_ERROR, "a fragmented control frame")
                if n > 125:
                    raise FrameError(PROTOCOL_ERROR, "a control frame over 125 bytes")
            elif opcode not in _DATA:
                raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            else:
                if opcode == CONT and not self._kind:
                    raise FrameError(PROTOCOL_ERROR, "a continuation with no message")
                if opcode != CONT and self._kind:
                    raise FrameError(PROTOCOL_ERROR, "a new message inside a fragmented one")
                if n == 126:
                    if size - start < 4:
                        return None
                    (n,) = struct.unpack_from("!H", buf, at)
                    at += 2
                elif n == 127:
                    if size - start < 10:
                        return None
                    (n,) = struct.unpack_from("!Q", buf, at)
                    at += 8
                if self._size + n > self.limit:
                    raise FrameError(TOO_BIG, f"message over {self.limit} bytes")
            end = at + 4 + n
            if size < end:
                return None
            payload = _apply_mask(buf[at + 4 : end], buf[at : at + 4]) if n else b""
            if end == size:  # all taken: let go of the chunk
                buf, size = b"", 0
                self._buf, self._at = buf, 0
            else:
                self._at = end
            if opcode in _CONTROL:
                if opcode == CLOSE:
                    close_payload(payload)  # raises for a bad one
                return opcode, payload
            if opcode == CONT:
                self._parts.append(payload)
                self._size += n
                if not fin:
                    continue
                opcode, payload = self._kind, b"".join(self._parts)
                self._kind, self._parts, self._size = 0, [], 0
            elif not fin:
                self._kind, self._parts, self._size = opcode, [payload], n
                continue
            if opcode == TEXT and not payload.isascii():
                try:
                    payload.decode()
                except UnicodeDecodeError:
                    raise FrameError(INVALID_DATA, "text that is not UTF-8") from None
            return opcode, payload
