"""``server.frames``: RFC 6455 without I/O (the handshake's answer, the client frame
parser and its close codes, the server frame encoder), checked against websockets'
own sans-I/O implementation where one exists."""

from __future__ import annotations

import base64
import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from server import frames
from server.frames import FrameError, Parser, Request
from tests.support.rawws import client_frame

LIMIT = 1000


def parse_all(data: bytes, limit: int = LIMIT) -> list[tuple[int, bytes]]:
    parser = Parser(limit)
    parser.feed(data)
    out = []
    while (event := parser.next()) is not None:
        out.append(event)
    return out


def refused(data: bytes, limit: int = LIMIT) -> tuple[int, str]:
    with pytest.raises(FrameError) as info:
        parse_all(data, limit)
    return info.value.code, info.value.reason


# ---------------------------------------------------------------- client frames


@given(
    st.lists(
        st.tuples(st.sampled_from(["text", "binary", "ping"]), st.binary(max_size=300)),
        max_size=8,
    ),
    st.integers(1, 7),
    st.data(),
)
def test_any_messages_in_any_fragments_and_chunks_come_out_whole(
    messages: list[tuple[str, bytes]], parts: int, data: st.DataObject
) -> None:
    wire = b""
    expected: list[tuple[int, bytes]] = []
    for kind, raw in messages:
        if kind == "ping":
            payload = raw[:125]
            wire += client_frame(frames.PING, payload)
            expected.append((frames.PING, payload))
            continue
        opcode = frames.TEXT if kind == "text" else frames.BINARY
        payload = raw.decode("latin-1").encode() if kind == "text" else raw
        cut = sorted(data.draw(st.lists(st.integers(0, len(payload)), max_size=parts - 1)))
        bounds = [0, *cut, len(payload)]
        pieces = [payload[a:b] for a, b in itertools.pairwise(bounds)]
        for i, piece in enumerate(pieces):
            first, last = i == 0, i == len(pieces) - 1
            wire += client_frame(opcode if first else frames.CONT, piece, fin=last)
            if not last and data.draw(st.booleans()):  # a control frame in between
                wire += client_frame(frames.PONG, b"p")
                expected.append((frames.PONG, b"p"))
        expected.append((opcode, payload))
    parser = Parser(LIMIT)
    got: list[tuple[int, bytes]] = []
    step = data.draw(st.integers(1, 64))
    for at in range(0, len(wire), step):  # fed in arbitrary chunks
        parser.feed(wire[at : at + step])
        while (event := parser.next()) is not None:
            got.append(event)
    assert got == expected
    assert parser.buffered == 0


@given(st.binary(max_size=70_000))
def test_the_encoder_writes_what_websockets_reads(payload: bytes) -> None:
    encoded = frames.encode(frames.BINARY, payload)
    reader = StreamReader()
    reader.feed_data(encoded)
    parsing = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parsing)
    except StopIteration as done:
        frame = done.value
    assert frame.opcode is Opcode.BINARY and frame.fin and frame.data == payload


def test_a_text_frame_is_the_same_bytes_whoever_it_goes_to() -> None:
    assert frames.text("hé") == frames.text("hé") == b"\x81\x03h\xc3\xa9"


def test_an_unmasked_client_frame_is_a_protocol_error() -> None:
    assert refused(client_frame(frames.TEXT, b"{}", masked=False)) == (
        1002,
        "client frames must be masked",
    )


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_reserved_bits_are_a_protocol_error(rsv: int) -> None:
    assert refused(client_frame(frames.TEXT, b"{}", rsv=rsv))[0] == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xF])
def test_unknown_opcodes_are_a_protocol_error(opcode: int) -> None:
    assert refused(client_frame(opcode, b"x"))[0] == 1002


def test_control_frames_must_be_short_and_whole() -> None:
    assert refused(client_frame(frames.PING, b"x" * 126))[0] == 1002
    assert refused(client_frame(frames.PING, b"x", fin=False))[0] == 1002
    assert parse_all(client_frame(frames.PING, b"x" * 125)) == [(frames.PING, b"x" * 125)]


def test_fragments_must_follow_their_message() -> None:
    assert refused(client_frame(frames.CONT, b"x"))[0] == 1002
    nested = client_frame(frames.TEXT, b"a", fin=False) + client_frame(frames.TEXT, b"b")
    assert refused(nested)[0] == 1002


def test_text_that_is_not_utf8_closes_1007() -> None:
    assert refused(client_frame(frames.TEXT, b'{"type": "ping\xff"}'))[0] == 1007
    # Split inside a character is fine; the whole message is what must be UTF-8.
    split = client_frame(frames.TEXT, b"\xc3", fin=False) + client_frame(frames.CONT, b"\xa9")
    assert parse_all(split) == [(frames.TEXT, "é".encode())]
    assert parse_all(client_frame(frames.BINARY, b"\xff")) == [(frames.BINARY, b"\xff")]


def test_a_message_over_the_limit_closes_1009_from_its_header() -> None:
    # Only the header has arrived: refused before a byte of the payload is buffered.
    header = client_frame(frames.TEXT, b"", length=1_000_000)[:14]
    assert refused(header)[0] == 1009
    assert refused(client_frame(frames.TEXT, b"x" * (LIMIT + 1)))[0] == 1009
    assert parse_all(client_frame(frames.TEXT, b"x" * LIMIT)) == [(frames.TEXT, b"x" * LIMIT)]
    # Fragments count together.
    half = LIMIT // 2 + 1
    pieces = client_frame(frames.TEXT, b"x" * half, fin=False) + client_frame(
        frames.CONT, b"x" * half
    )
    assert refused(pieces)[0] == 1009


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),  # one byte
        (struct.pack("!H", 999), 1002),
        (struct.pack("!H", 1004), 1002),
        (struct.pack("!H", 1005), 1002),
        (struct.pack("!H", 1006), 1002),
        (struct.pack("!H", 1015), 1002),
        (struct.pack("!H", 2999), 1002),
        (struct.pack("!H", 5000), 1002),
        (struct.pack("!H", 1000) + b"\xff", 1007),
    ],
)
def test_bad_close_frames(payload: bytes, code: int) -> None:
    assert refused(client_frame(frames.CLOSE, payload))[0] == code


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1012, 3000, 4001, 4999])
def test_good_close_frames(code: int) -> None:
    payload = struct.pack("!H", code) + "bye é".encode()
    assert parse_all(client_frame(frames.CLOSE, payload)) == [(frames.CLOSE, payload)]
    assert frames.close_payload(payload) == (code, "bye é")
    assert frames.close_payload(b"") == (1005, "")


def test_the_server_close_frame_cuts_its_reason_to_fit_between_characters() -> None:
    frame = frames.close(4008, "é" * 100)
    assert len(frame) <= 2 + 125
    code, reason = frames.close_payload(frame[2:])
    assert code == 4008 and reason == "é" * 61


# ---------------------------------------------------------------- the handshake


def upgrade(**changes: bytes | None) -> Request:
    headers = {
        b"host": b"x",
        b"connection": b"keep-alive, Upgrade",
        b"upgrade": b"websocket",
        b"sec-websocket-key": b"dGhlIHNhbXBsZSBub25jZQ==",
        b"sec-websocket-version": b"13",
    }
    for name, value in changes.items():
        key = name.replace("_", "-").encode()
        if value is None:
            headers.pop(key)
        else:
            headers[key] = value
    return Request("GET", "/ws?x=1", list(headers.items()))


def test_the_handshake_answers_with_the_rfc_accept_key() -> None:
    ok, answer = frames.handshake(upgrade())
    assert ok and answer.startswith(b"HTTP/1.1 101 ")
    # RFC 6455 section 1.3's example.
    assert b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in answer


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"sec_websocket_key": None}, 400),
        ({"sec_websocket_key": b"short"}, 400),
        ({"sec_websocket_key": base64.b64encode(b"x" * 15)}, 400),
        ({"sec_websocket_version": b"8"}, 426),
        ({"sec_websocket_version": None}, 426),
        ({"upgrade": b"h2c"}, 426),
        ({"connection": b"keep-alive"}, 426),
    ],
)
def test_a_bad_upgrade_is_refused_with_a_json_error(
    change: dict[str, bytes | None], status: int
) -> None:
    ok, answer = frames.handshake(upgrade(**change))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert not ok and head.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"content-type: application/json" in head
    assert body.startswith(b'{"error":{"code":')


def test_parse_request_waits_for_the_whole_head() -> None:
    raw = b"GET /ws?a=b HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
    assert frames.parse_request(raw[:-2]) is None
    request = frames.parse_request(raw)
    assert request is not None
    assert (request.method, request.path, request.header(b"upgrade")) == (
        "GET",
        "/ws",
        b"websocket",
    )
    with pytest.raises(ValueError):
        frames.parse_request(b"hello\r\n\r\n")


def test_many_frames_in_one_chunk_all_come_out_and_the_rest_waits() -> None:
    text = client_frame(frames.TEXT, b"{}")
    parser = Parser(LIMIT)
    parser.feed(client_frame(frames.PING, b"p") * 10_000 + text[:3])
    got = []
    while (event := parser.next()) is not None:
        got.append(event)
    assert got == [(frames.PING, b"p")] * 10_000
    assert parser.buffered == 3
    parser.feed(text[3:])
    assert parser.next() == (frames.TEXT, b"{}")
    assert parser.next() is None and parser.buffered == 0
