"""Web Push notifications in the subscriber's language: the words come from the server's
catalogues (server/locale) in the language of the token's ``locale`` claim that
registered the browser, through the real push path (encrypted push to a local push
service, decrypted with the browser's keys); and the pure text rules (plurals, notes,
dates) on their own."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from server.auth import ALGORITHM, mint_token, verify_token
from server.delivery.webpush.notification import notification
from server.i18n import LANGUAGES, Texts, catalogue_path, negotiate
from server.settings import Settings
from server.wire import TaskJSON
from tests.push.receiver import Receiver, running
from tests.push.test_webpush import Browser, vapid_settings
from tests.support.app import SECRET, Live, make_settings, serve
from tests.support.tasks import task_body

REPO = Path(__file__).resolve().parents[2]
KEYWORDS = {"gettext": None, "ngettext": (1, 2)}
PLACEHOLDER = re.compile(r"\{\w+\}")
# English of babel.dates (relative times, 12-hour clock, months): none may show in another
# language.
ENGLISH_DATE_WORDS = ("hour", "minute", "day", "week", " ago", "AM", "PM", "Dec", "Jan")


def server_messages() -> list[str | tuple[str, ...]]:
    """Every text the server's code asks its catalogues for (as pybabel would extract)."""
    found: list[str | tuple[str, ...]] = []
    for path in sorted((REPO / "server").rglob("*.py")):
        found += [m for _, m, _, _ in extract_from_file("python", path, keywords=KEYWORDS)]
    return found


def english_fragments() -> list[str]:
    """The literal parts of every English text (around its placeholders), long enough
    not to be a word another language shares."""
    out: list[str] = []
    for message in server_messages():
        for text in (message,) if isinstance(message, str) else message:
            out += [f.strip() for f in PLACEHOLDER.split(text) if len(f.strip()) >= 5]
    return out


def assert_no_english(text: str) -> None:
    for fragment in english_fragments():
        assert fragment not in text, (fragment, text)
    for word in ENGLISH_DATE_WORDS:
        assert word not in text, (word, text)


def person(live: Live, user: str, locale: str | None) -> httpx.AsyncClient:
    token = mint_token(SECRET, user, 3600, locale=locale)
    return httpx.AsyncClient(base_url=live.base_url, headers={"Authorization": f"Bearer {token}"})


async def subscribe(live: Live, user: str, browser: Browser, locale: str | None) -> None:
    async with person(live, user, locale) as c:
        resp = await c.post("/api/v1/me/push-subscriptions", json=browser.subscription())
    assert resp.status_code in (200, 201), resp.text


@pytest.fixture
async def push_service() -> AsyncIterator[Receiver]:
    async with running(Receiver()) as r:
        yield r


@pytest.fixture
async def pushing(sqlite_url: str) -> AsyncIterator[Live]:
    async with serve(vapid_settings(make_settings(sqlite_url))) as live:
        yield live


def plain_task(tid: str, **kw: Any) -> dict[str, Any]:
    """A task whose own words are not English either: no process, no record, a title
    that is a code."""
    return task_body(tid, "alice", title=f"INV-{tid}", process=None, record=None, **kw)


@pytest.mark.parametrize(
    ("locale", "lang", "needs_you", "due", "waiting", "two_waiting"),
    [
        (
            "de-AT",
            "de-AT",
            "Ein Prozess braucht dich.",
            "Fällig in 2 Stunden · ",
            "Eine Prozessaufgabe wartet auf dich.",
            "2 Prozessaufgaben warten auf dich.",
        ),
        (
            "fr",
            "fr",
            "Un processus a besoin de vous.",
            "Échéance dans 2 heures · ",
            "Une tâche de processus vous attend.",
            "2 tâches de processus vous attendent.",
        ),
    ],
)
async def test_a_push_carries_its_words_in_the_subscribers_language_and_no_english(
    pushing: Live,
    push_service: Receiver,
    locale: str,
    lang: str,
    needs_you: str,
    due: str,
    waiting: str,
    two_waiting: str,
) -> None:
    browser = Browser.new(push_service.base() + "/push/alice")
    await subscribe(pushing, "alice", browser, locale)
    due_at = (datetime.now(UTC) + timedelta(hours=2, minutes=1)).isoformat()
    async with pushing.producer() as c:
        resp = await c.post("/api/v1/tasks", json=plain_task("1", due_at=due_at))
        assert resp.status_code == 201, resp.text
        await c.post("/api/v1/tasks", json=plain_task("2"))
    await push_service.wait(lambda: len(push_service.requests) == 2)
    first, second = (browser.decrypt(r)["notification"] for r in push_service.requests)
    assert first["lang"] == lang and first["title"] == "INV-1"
    lines = first["body"].split("\n")
    assert lines[0] == needs_you and lines[1].startswith(due) and lines[2] == waiting
    assert second["body"].split("\n") == [needs_you, two_waiting]
    for words in (first, second):
        assert_no_english(words["title"] + "\n" + words["body"])


@pytest.mark.parametrize("locale", [None, "xx-YY", "not a locale!", "es"])
async def test_a_subscriber_without_a_known_language_reads_english(
    pushing: Live, push_service: Receiver, locale: str | None
) -> None:
    browser = Browser.new(push_service.base() + "/push/alice")
    await subscribe(pushing, "alice", browser, locale)
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=plain_task("1"))
    await push_service.wait(lambda: len(push_service.requests) == 1)
    words = browser.decrypt(push_service.requests[0])["notification"]
    assert words == {
        "title": "INV-1",
        "body": "A process needs you.\nOne process task is waiting for you.",
        "lang": "en",
    }


async def test_each_browser_of_a_person_gets_its_own_language(
    backend: Settings, push_service: Receiver
) -> None:
    async with serve(vapid_settings(backend)) as live:
        german = Browser.new(push_service.base() + "/push/alice-de")
        french = Browser.new(push_service.base() + "/push/alice-fr")
        await subscribe(live, "alice", german, "de")
        await subscribe(live, "alice", french, "fr-CA")
        async with live.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
        await push_service.wait(lambda: len(push_service.requests) == 2)
    by_path = {r.path: r for r in push_service.requests}
    de = german.decrypt(by_path["/push/alice-de"])
    fr = french.decrypt(by_path["/push/alice-fr"])
    assert de["task"] == fr["task"] and de["seq"] == fr["seq"] == 1
    assert de["notification"]["body"] == (
        "Invoice approval · Acme\nEine Prozessaufgabe wartet auf dich."
    )
    assert fr["notification"] == {
        "title": "Approve t-1",
        "body": "Invoice approval · Acme\nUne tâche de processus vous attend.",
        "lang": "fr-CA",
    }


async def test_registering_again_with_another_language_switches_the_pushes(
    pushing: Live, push_service: Receiver
) -> None:
    browser = Browser.new(push_service.base() + "/push/alice")
    await subscribe(pushing, "alice", browser, "de")
    await subscribe(pushing, "alice", browser, "fr")  # the person changed language
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=plain_task("1"))
    await push_service.wait(lambda: len(push_service.requests) == 1)
    assert browser.decrypt(push_service.requests[0])["notification"]["lang"] == "fr"


# ---------------------------------------------------------------- the pure rules

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def task(**kw: Any) -> TaskJSON:
    base: dict[str, Any] = {
        "id": "t-1",
        "owner": "alice",
        "role": None,
        "acted_by": None,
        "title": "INV-7",
        "kind": "activity",
        "status": "running",
        "process": None,
        "record": None,
        "url": None,
        "postponed_until": None,
        "created_at": "2026-12-01T11:00:00.000000Z",
        "updated_at": "2026-12-01T11:00:00.000000Z",
        "due_at": None,
        "priority": "normal",
        "overdue": False,
        "actions": None,
        "outcome": None,
    }
    base.update(kw)
    return base  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("tag", "counts"),
    [
        (
            "en",
            {
                0: "Nothing is waiting for you right now.",
                1: "One process task is waiting for you.",
                5: "5 process tasks are waiting for you.",
            },
        ),
        (
            "de",
            {
                0: "Gerade wartet nichts auf dich.",
                1: "Eine Prozessaufgabe wartet auf dich.",
                5: "5 Prozessaufgaben warten auf dich.",
            },
        ),
        (
            "fr",
            {
                0: "Rien ne vous attend pour le moment.",
                1: "Une tâche de processus vous attend.",
                5: "5 tâches de processus vous attendent.",
            },
        ),
    ],
)
def test_the_count_line_takes_the_catalogues_plural(tag: str, counts: dict[int, str]) -> None:
    for n, text in counts.items():
        assert notification(task(), n, Texts(tag), NOW)["body"].split("\n")[-1] == text


def test_an_overdue_urgent_task_says_so_with_the_date_in_the_language() -> None:
    overdue = task(due_at="2026-12-01T09:30:00.000000Z", overdue=True, priority="urgent")
    body = notification(overdue, 1, Texts("de-DE"), NOW)["body"]
    assert body.split("\n")[1] == "Dringend · Überfällig seit 01.12.2026, 09:30 UTC"
    english = notification(overdue, 1, Texts("en"), NOW)["body"]
    assert english.split("\n")[1] == "Urgent · Overdue since Dec 1, 2026, 9:30\u202fAM UTC"


def test_a_postponed_task_says_until_when() -> None:
    later = task(status="postponed", postponed_until="2026-12-02T08:00:00.000000Z")
    body = notification(later, 0, Texts("fr"), NOW)["body"]
    assert body.split("\n")[1] == "Reportée jusqu\u2019à 2 déc. 2026, 08:00 TU"


def test_the_process_and_record_stand_in_for_the_generic_line() -> None:
    named = task(
        process={"instance_id": "p", "name": "Rechnungsfreigabe"},
        record={"entity": "Account", "id": "acc-1", "title": None},
    )
    assert notification(named, 1, Texts("de"), NOW)["body"].split("\n")[0] == (
        "Rechnungsfreigabe · acc-1"
    )


@pytest.mark.parametrize(
    ("tag", "chosen"),
    [
        ("de-AT", "de-AT"),
        ("de_CH", "de-CH"),
        ("fr", "fr"),
        ("zh-Hant-TW", "en"),
        ("xx", "en"),
        ("", "en"),
        (None, "en"),
        ("not a locale!", "en"),
        ("de-" + "x" * 40, "en"),
    ],
)
def test_a_locale_is_negotiated_to_a_catalogue_or_english(tag: str | None, chosen: str) -> None:
    assert negotiate(tag) == chosen


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_every_server_text_is_translated_with_its_placeholders(language: str) -> None:
    with catalogue_path(language).open("rb") as po:
        catalog = read_po(po, locale=language)
    used = server_messages()
    assert used, "the extraction finds the server's texts"
    for message in used:
        key = message if isinstance(message, str) else message[0]
        entry = catalog.get(key)
        assert entry is not None and not entry.fuzzy, (language, key)
        sources = [message] if isinstance(message, str) else list(message)
        string = entry.string
        targets = [string] if isinstance(string, str) else list(string or ())
        assert all(targets), (language, key)
        wanted = {p for s in sources for p in PLACEHOLDER.findall(s)} - {"{n}"}
        for target in targets:
            assert set(PLACEHOLDER.findall(target)) - {"{n}"} == wanted, (language, target)


@pytest.mark.parametrize(
    ("claim", "kept"),
    [("de-AT", "de-AT"), ("not a locale!", "not a locale!"), (42, None), ("x" * 36, None)],
)
def test_the_tokens_locale_claim_is_kept_only_as_a_short_string(
    sqlite_url: str, claim: object, kept: str | None
) -> None:
    """A wish, not a credential: a claim of another type or length is ignored (and the
    token still works); a short string is kept as sent and negotiated when used."""
    now = int(time.time())
    claims = {"sub": "alice", "iat": now, "exp": now + 600, "locale": claim}
    token = jwt.encode(claims, SECRET, algorithm=ALGORITHM)
    assert verify_token(make_settings(sqlite_url), token).locale == kept
