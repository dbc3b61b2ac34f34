"""How the panel's files are served: no stale modules, a strict page policy, an icon."""

from __future__ import annotations

import httpx

from tests.support.app import Live


async def test_the_page_carries_a_content_security_policy(embedded: Live) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as c:
        page = await c.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self' ws: wss:" in csp
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["referrer-policy"] == "no-referrer"


async def test_static_files_are_revalidated_and_missing_ones_are_404(embedded: Live) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as c:
        css = await c.get("/static/panel.css")
        again = await c.get("/static/panel.css", headers={"If-None-Match": css.headers["etag"]})
        missing = await c.get("/static/nope.js")
        escape = await c.get("/static/../server/settings.py")
    assert css.status_code == 200 and css.headers["cache-control"] == "no-cache"
    assert again.status_code == 304
    assert missing.status_code == 404
    assert escape.status_code == 404


async def test_favicon_is_served(embedded: Live) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as c:
        icon = await c.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.content.startswith(b"<svg")
