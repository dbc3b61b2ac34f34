"""Request ids and the access log: an id is taken from ``X-Request-ID`` when sane, else
made up, echoed in the answer and carried by the request's log lines; one access line
per HTTP request, never with a token or a query string."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from server.logs import JsonFormatter, sane_request_id
from tests.support.app import PRODUCER_KEY, SECRET, Live, make_settings, serve, token
from tests.support.server_proc import ServerProcess
from tests.support.tasks import task_body


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the server logs under ``taskbell``, formatted as in production."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("taskbell")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def entries(out: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]


def test_sane_ids_are_kept_and_others_made_up() -> None:
    assert sane_request_id("abc-123_X.y") == "abc-123_X.y"
    assert sane_request_id("a" * 64) == "a" * 64
    for bad in (None, "", "a" * 65, "has space", "semi;colon", "ünï", "a\nb"):
        made = sane_request_id(bad)
        assert made != bad and re.fullmatch(r"[0-9a-f]{16}", made)


async def test_a_sane_id_is_echoed_and_an_insane_one_replaced(embedded: Live) -> None:
    async with embedded.producer() as http:
        kept = await http.get("/healthz", headers={"X-Request-ID": "req-42.a_b"})
        replaced = await http.get("/healthz", headers={"X-Request-ID": "x" * 65})
        made = await http.get("/api/v1/tasks/nope")
        other = await http.get("/api/v1/tasks/nope")
    assert kept.headers["x-request-id"] == "req-42.a_b"
    assert re.fullmatch(r"[0-9a-f]{16}", replaced.headers["x-request-id"])
    assert made.status_code == 404 and re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    assert made.headers["x-request-id"] != other.headers["x-request-id"]


async def test_errors_refused_at_the_edge_carry_the_id_too(embedded: Live) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as http:
        got = await http.post(
            "/api/v1/tasks",
            content=b"x" * (embedded.settings.max_body_bytes + 10),
            headers={"X-Request-ID": "big-one", "Authorization": "Bearer pk-test-producer"},
        )
    assert got.status_code == 413 and got.headers["x-request-id"] == "big-one"


async def test_one_access_line_per_request_with_no_token_and_no_query(
    embedded: Live, log_lines: io.StringIO
) -> None:
    secret_token = token("alice")
    async with embedded.producer() as p:
        await p.post("/api/v1/tasks", json=task_body("t-log", "alice"))
    async with httpx.AsyncClient(base_url=embedded.base_url) as http:
        opened = await http.get(
            f"/api/v1/tasks/t-log/open?token={secret_token}",
            headers={"X-Request-ID": "open-1"},
        )
        counter = await http.get(
            "/api/v1/me/counter?x=1",
            headers={"Authorization": f"Bearer {secret_token}", "X-Request-ID": "count-1"},
        )
    assert opened.status_code == 303 and counter.status_code == 200
    text = log_lines.getvalue()
    assert secret_token not in text and "token=" not in text and "x=1" not in text
    access = [e for e in entries(log_lines) if e["logger"] == "taskbell.access"]
    by_id = {e["request_id"]: e for e in access}
    assert by_id["open-1"]["path"] == "/api/v1/tasks/t-log/open"
    assert by_id["open-1"]["method"] == "GET" and by_id["open-1"]["status"] == 303
    assert by_id["count-1"]["path"] == "/api/v1/me/counter"
    assert by_id["count-1"]["status"] == 200
    assert isinstance(by_id["count-1"]["duration_ms"], float)
    assert len([e for e in access if e["path"] == "/api/v1/tasks"]) == 1


async def test_lines_logged_while_handling_a_request_carry_its_id(
    embedded: Live, log_lines: io.StringIO
) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as http:
        got = await http.get(
            "/api/v1/processes/stats?from=not-a-time",
            headers={"Authorization": "Bearer pk-test-producer", "X-Request-ID": "stats-1"},
        )
    assert got.status_code == 400
    mine = [e for e in entries(log_lines) if e.get("request_id") == "stats-1"]
    assert mine and all(e["request_id"] == "stats-1" for e in mine)
    logging.getLogger("taskbell.test").info("outside any request")
    outside = [e for e in entries(log_lines) if e["msg"] == "outside any request"]
    assert outside and "request_id" not in outside[0]


async def test_python_m_server_writes_access_lines_with_ids_and_no_tokens(tmp_path: Path) -> None:
    """The production set-up (``python -m server``, its logging configuration)."""
    env = {
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/t.db",
    }
    server = ServerProcess(env)
    secret_token = token("alice")
    await asyncio.to_thread(server.start)
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            got = await http.get(
                f"/api/v1/me/counter?token={secret_token}",
                headers={"Authorization": f"Bearer {secret_token}", "X-Request-ID": "prod-1"},
            )
    finally:
        await asyncio.to_thread(server.stop)
    assert got.status_code == 200 and got.headers["x-request-id"] == "prod-1"
    text = server.log_text()
    assert secret_token not in text and "token=" not in text
    lines = [orjson.loads(x) for x in text.splitlines() if x.startswith("{")]
    (access,) = [e for e in lines if e.get("request_id") == "prod-1"]
    assert access["logger"] == "taskbell.access" and access["level"] == "info"
    assert (access["method"], access["path"], access["status"]) == (
        "GET",
        "/api/v1/me/counter",
        200,
    )


async def test_lines_name_the_tenant_once_the_caller_is_known(
    sqlite_url: str, log_lines: io.StringIO
) -> None:
    settings = make_settings(
        sqlite_url, producer_keys=frozenset({PRODUCER_KEY, "acme=pk-acme-0123"})
    )
    async with serve(settings) as live, httpx.AsyncClient(base_url=live.base_url) as http:
        for rid, key in (
            ("acme-1", "pk-acme-0123"),
            ("default-1", PRODUCER_KEY),
            ("nobody-1", "x"),
        ):
            await http.get(
                "/api/v1/tasks/t-none",
                headers={"Authorization": f"Bearer {key}", "X-Request-ID": rid},
            )
    access = {e["request_id"]: e for e in entries(log_lines) if e["logger"] == "taskbell.access"}
    assert access["acme-1"]["tenant"] == "acme" and access["acme-1"]["status"] == 404
    assert access["default-1"]["tenant"] == "default"
    assert access["nobody-1"]["status"] == 401 and "tenant" not in access["nobody-1"]
