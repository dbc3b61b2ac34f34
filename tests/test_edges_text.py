"""Text at the edge: control characters in names, NUL anywhere, blank titles, URLs that
are not http(s) or a same-origin path, and JSON objects that repeat a key."""

from __future__ import annotations

import sys
import unicodedata
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from server.errors import CloseCode
from server.fields import CONTROL, is_name
from tests.support.app import Live, make_settings, serve, token
from tests.support.client import FeedClient
from tests.support.tasks import assert_error, task_body

RECORD = {"entity": "Account", "id": "acc-1", "title": "Acme"}
PROCESS = {"instance_id": "p-1", "name": "Invoice approval"}

CONTROL_IN_NAMES: list[dict[str, Any]] = [
    {"id": "a\u0000b"},
    {"id": "a\u0007b"},
    {"id": "a\u007fb"},
    {"id": "a\u0085b"},
    {"owner": "al\u0000ice"},
    {"owner": "al\u001bice"},
    {"record": {**RECORD, "entity": "Acc\u0001ount"}},
    {"record": {**RECORD, "id": "acc\u0000-1"}},
    {"process": {**PROCESS, "instance_id": "p\u0000-1"}},
    {"process": {**PROCESS, "name": "Invoice\u0000 approval"}},
    {"process": {**PROCESS, "name": "Invoice\u0008 approval"}},
]


@pytest.mark.parametrize("change", CONTROL_IN_NAMES, ids=lambda c: repr(c)[:40])
async def test_control_characters_in_names_are_422(live: Live, change: dict[str, Any]) -> None:
    body = {**task_body(), **change}
    async with live.producer() as c:
        resp = await c.post("/api/v1/tasks", json=body)
    assert_error(resp, 422, "invalid")


NUL_IN_TEXT: list[dict[str, Any]] = [
    {"title": "a\u0000b"},
    {"url": "https://crm.example/a\u0000b"},
    {"record": {**RECORD, "title": "Ac\u0000me"}},
]


@pytest.mark.parametrize("change", NUL_IN_TEXT, ids=lambda c: repr(c)[:40])
async def test_nul_in_text_is_422_and_nothing_is_stored(live: Live, change: dict[str, Any]) -> None:
    async with live.producer() as c:
        resp = await c.post("/api/v1/tasks", json={**task_body(), **change})
        missing = await c.get("/api/v1/tasks/t-1")
    assert_error(resp, 422, "invalid")
    assert missing.status_code == 404


async def test_nul_in_a_patch_title_is_422(live: Live) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        resp = await c.patch("/api/v1/tasks/t-1", json={"title": "x\u0000"})
    assert_error(resp, 422, "invalid")


async def test_nul_in_a_process_instance_id_is_422(live: Live) -> None:
    async with live.producer() as c:
        resp = await c.post("/api/v1/processes", json={"id": "p\u0000", "name": "Onboarding"})
    assert_error(resp, 422, "invalid")


async def test_a_nul_in_a_path_id_is_404(live: Live) -> None:
    async with live.producer() as c:
        resp = await c.get("/api/v1/tasks/a%00b")
    assert_error(resp, 404, "task_not_found")


async def test_control_characters_are_fine_as_escaped_text_elsewhere(live: Live) -> None:
    """A tab or a newline in a title is text, not a name: accepted."""
    async with live.producer() as c:
        resp = await c.post("/api/v1/tasks", json=task_body(title="line one\nline\ttwo"))
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize("title", [" ", "   \t\n", "\u00a0\u2003"])
async def test_whitespace_only_titles_are_422(embedded: Live, title: str) -> None:
    async with embedded.producer() as c:
        resp = await c.post("/api/v1/tasks", json=task_body(title=title))
    assert_error(resp, 422, "invalid")


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.test/phish",
        "/\\evil.test/phish",
        "https:evil.test",
        "ftp://files.example/a",
        "crm.example/pages/1",
        "https://",
    ],
)
async def test_urls_that_are_not_http_or_a_same_origin_path_are_422(
    embedded: Live, url: str
) -> None:
    async with embedded.producer() as c:
        created = await c.post("/api/v1/tasks", json=task_body("c", url=url))
        await c.post("/api/v1/tasks", json=task_body("p"))
        patched = await c.patch("/api/v1/tasks/p", json={"url": url})
    assert_error(created, 422, "invalid")
    assert_error(patched, 422, "invalid")


@pytest.mark.parametrize(
    "url", ["https://crm.example/a?b=c#d", "http://10.0.0.1:8080/x", "/pages/approve?task=1"]
)
async def test_http_urls_and_same_origin_paths_are_accepted(embedded: Live, url: str) -> None:
    async with embedded.producer() as c:
        resp = await c.post("/api/v1/tasks", json=task_body(url=url))
    assert resp.status_code == 201, resp.text
    assert resp.json()["url"] == url


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "t-1", "id": "t-2", "owner": "alice", "title": "x"}',
        b'{"id": "t-1", "owner": "alice", "title": "x", "record":'
        b' {"entity": "A", "id": "1", "id": "2"}}',
        b'{"id": "t-1", "owner": "alice", "title": "a:b", "title": "c"}',
        b'{"id": "t-1", "owner": "alice", "title": "x", "\\u0074itle": "y"}',
    ],
)
async def test_a_body_that_repeats_a_key_is_400_duplicate_key(live: Live, raw: bytes) -> None:
    async with live.producer() as c:
        resp = await c.post(
            "/api/v1/tasks", content=raw, headers={"Content-Type": "application/json"}
        )
        missing = await c.get("/api/v1/tasks/t-1")
    assert_error(resp, 400, "duplicate_key")
    assert missing.status_code == 404


async def test_the_same_key_in_sibling_objects_is_not_a_duplicate(embedded: Live) -> None:
    ops = [{"op": "create", "task": task_body("a")}, {"op": "create", "task": task_body("b")}]
    async with embedded.producer() as c:
        resp = await c.post(
            "/api/v1/tasks/batch",
            content=orjson.dumps({"ops": ops}),
            headers={"Content-Type": "application/json"},
        )
    assert [r["status"] for r in resp.json()["results"]] == [201, 201]


async def test_a_colon_inside_strings_is_not_a_key(embedded: Live) -> None:
    raw = b'{"id": "t-1", "owner": "alice", "title": "a \\": b:", "url": "https://x/y:z"}'
    async with embedded.producer() as c:
        resp = await c.post(
            "/api/v1/tasks", content=raw, headers={"Content-Type": "application/json"}
        )
    assert resp.status_code == 201, resp.text
    assert resp.json()["title"] == 'a ": b:'


async def test_a_websocket_message_that_repeats_type_is_closed_1008(embedded: Live) -> None:
    async with FeedClient(embedded.ws_url, token("alice")) as feed:
        await feed.connect()
        await feed.send('{"type": "ping", "type": "auth", "token": "x"}')
        code, reason = await feed.closed_with()
    assert code == CloseCode.BAD_MESSAGE
    assert "duplicate key" in reason


async def test_a_first_message_that_repeats_type_does_not_authenticate(embedded: Live) -> None:
    """Last-one-wins would read this as an auth message and send a snapshot."""
    feed = FeedClient(embedded.ws_url, token("alice"))
    feed.ws = await connect(embedded.ws_url)
    try:
        await feed.send(f'{{"type": "ping", "type": "auth", "token": "{token("alice")}"}}')
        code, reason = await feed.closed_with()
    finally:
        await feed.close()
    assert (code, reason) == (CloseCode.BAD_MESSAGE, "duplicate key 'type' in a JSON object")


@pytest.mark.parametrize("name", ["a%00b", "a%07b", "%20"])
async def test_disabling_a_process_name_with_control_characters_is_404(
    live: Live, name: str
) -> None:
    async with live.producer() as c:
        resp = await c.post(f"/api/v1/process-definitions/{name}/disable")
        listed = await c.get("/api/v1/process-definitions")
    assert_error(resp, 404, "process_not_found")
    assert listed.json()["processes"] == []


async def test_a_value_postgres_refuses_in_a_read_is_400_not_503(pg_url: str) -> None:
    async with serve(make_settings(pg_url)) as live, live.producer() as c:
        resp = await c.get("/api/v1/processes/stats", params={"name": "a\u0000b"})
    assert_error(resp, 400, "bad_value")


def test_the_control_character_pattern_is_exactly_unicode_category_cc() -> None:
    """``fields.CONTROL`` stands in for ``unicodedata.category(c) == "Cc"``: the same
    code points, every one of them (and a name, url or process name holding any of them
    is refused by the rules that use it)."""
    everything = "".join(map(chr, range(sys.maxunicode + 1)))
    by_pattern = {m.group() for m in CONTROL.finditer(everything)}
    assert by_pattern == {c for c in everything if unicodedata.category(c) == "Cc"}
    assert not is_name("a\u009fb") and is_name("a\u00a0b")
