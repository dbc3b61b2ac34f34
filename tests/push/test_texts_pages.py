"""The one page the server writes itself (the demo's task page, which a demo task's url
opens without a token) in the browser's language, from ``Accept-Language``; and how that
header is read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from server.i18n import from_accept_language
from tests.push.test_texts_push import assert_no_english
from tests.support.app import Live, make_settings, serve

BOTH = ("TASKBELL_SECRET", "TASKBELL_PRODUCER_KEYS")


@pytest.fixture
async def demo(sqlite_url: str) -> AsyncIterator[Live]:
    async with serve(make_settings(sqlite_url, demo=True, made_up=BOTH)) as live:
        yield live


async def page(live: Live, task_id: str, accept: str | None) -> httpx.Response:
    headers = {"Accept-Language": accept} if accept is not None else {}
    async with httpx.AsyncClient(base_url=live.base_url) as c:
        return await c.get(f"/demo/task/{task_id}", headers=headers)


@pytest.mark.parametrize(
    ("accept", "lang", "heading", "back"),
    [
        ("de-AT,de;q=0.9,en;q=0.5", "de-AT", "Seite der Demo-Aufgabe", "Zurück zur"),
        ("es-ES, fr;q=0.8", "fr", "Page de la tâche de démo", "Retour au panneau"),
    ],
)
async def test_the_demo_task_page_is_in_the_browsers_language_and_no_english(
    demo: Live, accept: str, lang: str, heading: str, back: str
) -> None:
    resp = await page(demo, "t-1", accept)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert resp.headers["vary"] == "Accept-Language"
    html = resp.text
    assert f"<html lang={lang}>" in html and f"<h1>{heading}</h1>" in html and back in html
    assert "<code>t-1</code>" in html
    assert_no_english(html.replace("CRM", ""))


@pytest.mark.parametrize("accept", [None, "", "es-ES,it;q=0.5", "*", "xx;q=abc", "q=1;;,,"])
async def test_the_demo_task_page_without_a_known_language_is_english(
    demo: Live, accept: str | None
) -> None:
    html = (await page(demo, "t-1", accept)).text
    assert "<html lang=en>" in html and "<h1>Demo task page</h1>" in html


async def test_the_task_id_stays_text_in_every_language(demo: Live) -> None:
    html = (await page(demo, "x<b>y", "de")).text
    assert "<code>x&lt;b&gt;y</code>" in html and "<b>" not in html


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("de-AT,de;q=0.9,en;q=0.5", "de-AT"),
        ("en;q=0.4,fr;q=0.9", "fr"),
        ("en-GB,de;q=0.9", "en-GB"),  # English first is English, not the next one
        ("es,de;q=0.1", "de"),
        ("de;q=0", "en"),  # q=0: not wanted
        ("fr;q=oops,de", "de"),
        ("de-" + "x" * 600, "en"),
        (None, "en"),
    ],
)
def test_accept_language_is_read_by_q_then_order(header: str | None, chosen: str) -> None:
    assert from_accept_language(header) == chosen
