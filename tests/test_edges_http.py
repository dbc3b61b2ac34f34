"""HTTP hygiene at the edge: JSON bodies only (415), 401s that say which scheme they
want, a client that hangs up mid-body logged quietly, and security headers on answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from server.errors import ConfigError
from server.settings import Settings
from tests.support.app import PRODUCER_KEY, SECRET, Live, make_settings, serve
from tests.support.tasks import assert_error, task_body


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_a_body_that_is_not_json_by_its_content_type_is_415(
    embedded: Live, content_type: str
) -> None:
    async with embedded.producer() as c:
        resp = await c.post(
            "/api/v1/tasks",
            content=httpx.Response(200, json=task_body()).content,
            headers={"Content-Type": content_type},
        )
        missing = await c.get("/api/v1/tasks/t-1")
    assert_error(resp, 415, "unsupported_media_type")
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "application/merge-patch+json"],
)
async def test_json_bodies_with_or_without_a_content_type_are_accepted(
    embedded: Live, content_type: str | None
) -> None:
    async with embedded.producer() as c:
        request = c.build_request("POST", "/api/v1/tasks", json=task_body())
        if content_type is None:
            del request.headers["Content-Type"]
        else:
            request.headers["Content-Type"] = content_type
        resp = await c.send(request)
    assert resp.status_code == 201, resp.text


async def test_a_401_carries_www_authenticate_bearer(embedded: Live) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as c:
        missing = await c.get("/api/v1/me/counter")
        bad = await c.get("/api/v1/me/counter", headers={"Authorization": "Bearer nope"})
    assert_error(missing, 401, "missing_credentials")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert bad.headers["www-authenticate"].startswith("Bearer")
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]


async def test_a_client_that_hangs_up_mid_body_is_logged_at_info_not_error(
    embedded: Live, caplog: pytest.LogCaptureFixture
) -> None:
    url = urlsplit(embedded.base_url)
    caplog.set_level(logging.INFO)
    _reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {PRODUCER_KEY}\r\nContent-Length: 1000\r\n\r\n".encode()
        + b'{"id": "t-1", "ow'
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await writer.wait_closed()
    for _ in range(50):
        if any("went away" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert gone and all(r.levelno == logging.INFO for r in gone)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---------------------------------------------------------------- security headers


async def test_api_answers_are_nosniff_and_no_store(live: Live) -> None:
    async with live.producer() as c:
        created = await c.post("/api/v1/tasks", json=task_body())
        missing = await c.get("/api/v1/tasks/nope")
    async with live.person("alice") as p:
        mine = await p.get("/api/v1/me/tasks")
    for resp in (created, missing, mine):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["cache-control"] == "no-store"


async def test_errors_before_routing_have_the_headers_too(embedded: Live) -> None:
    async with embedded.producer() as c:
        big = await c.post("/api/v1/tasks", json=task_body(title="x" * 70_000))
        nowhere = await c.get("/api/v1/nowhere")
    for resp in (big, nowhere):
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["cache-control"] == "no-store"


async def test_a_redirect_under_the_api_is_no_store_and_nosniff(embedded: Live) -> None:
    async with embedded.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        resp = await c.get("/api/v1/tasks/t-1/open")
    assert resp.status_code == 303
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["x-content-type-options"] == "nosniff"


async def test_the_favicon_is_nosniff(embedded: Live) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as c:
        resp = await c.get("/favicon.ico")
    assert resp.headers["x-content-type-options"] == "nosniff"


async def test_the_panel_may_be_framed_only_by_itself_by_default(embedded: Live) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as c:
        resp = await c.get("/")
    assert "frame-ancestors 'self'" in resp.headers["content-security-policy"]


@pytest.fixture
async def framed(sqlite_url: str) -> AsyncIterator[Live]:
    settings = make_settings(sqlite_url, frame_ancestors="'self' https://crm.example.com")
    async with serve(settings) as running:
        yield running


async def test_the_panel_may_be_framed_by_the_configured_host(framed: Live) -> None:
    async with httpx.AsyncClient(base_url=framed.base_url) as c:
        resp = await c.get("/")
    csp = resp.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://crm.example.com" in csp


async def test_frame_ancestors_star_lets_any_page_frame_the_panel(sqlite_url: str) -> None:
    """``*`` leaves the directive out, so that even an opaque-origin host page may."""
    settings = make_settings(sqlite_url, frame_ancestors="*")
    async with serve(settings) as live, httpx.AsyncClient(base_url=live.base_url) as c:
        resp = await c.get("/")
    assert "frame-ancestors" not in resp.headers["content-security-policy"]
    assert "default-src 'self'" in resp.headers["content-security-policy"]


def test_frame_ancestors_is_read_from_the_environment() -> None:
    env = {"TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY}
    env["TASKBELL_FRAME_ANCESTORS"] = "https://crm.example.com"
    assert Settings.from_env(env).frame_ancestors == "https://crm.example.com"


def test_frame_ancestors_that_would_break_out_of_the_csp_refuse_to_start() -> None:
    env = {"TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY}
    env["TASKBELL_FRAME_ANCESTORS"] = "'self'; script-src *"
    with pytest.raises(ConfigError, match="TASKBELL_FRAME_ANCESTORS"):
        Settings.from_env(env)
