"""The desktop bridge's notifications in the person's language, on a real session D-Bus
with a recording notification service: the language comes from ``--locale``, else the
token's ``locale`` claim, else the desktop's ``LANG``, else English; and the bridge's
catalogues hold every text its code asks for."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from bridge.desktop import summary_and_body
from bridge.i18n import DOMAIN, LANGUAGES, LOCALE_DIR, Texts, choose, desktop_locale
from bridge.state import Task
from server.auth import mint_token
from tests.push.desktop import (
    BridgeProcess,
    Notifications,
    Notified,
    SessionBus,
    notification_service,
    session_bus,
)
from tests.support.app import SECRET, Live
from tests.support.tasks import task_body

REPO = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"\{\w+\}")
LOCALE_VARS = ("LC_ALL", "LC_MESSAGES", "LANG")


def catalogue(language: str) -> Catalog:
    with (LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as po:
        return read_po(po, locale=language)


def bridge_messages() -> list[str]:
    found: list[str] = []
    for path in sorted((REPO / "bridge").rglob("*.py")):
        for _, message, _, _ in extract_from_file("python", path, keywords={"gettext": None}):
            assert isinstance(message, str)
            found.append(message)
    return found


def assert_no_english(language: str, text: str) -> None:
    """No literal part of an English text whose translation differs ("Urgent" is French
    too) is left in ``text``."""
    for entry in catalogue(language):
        if not entry.id or entry.string == entry.id:
            continue
        assert isinstance(entry.id, str)
        for fragment in PLACEHOLDER.split(entry.id):
            if len(fragment.strip()) >= 4:
                assert fragment.strip() not in text, (fragment, text)


@pytest.fixture
def bus() -> Iterator[SessionBus]:
    with session_bus() as b:
        yield b


@pytest.fixture
async def desktop(bus: SessionBus) -> AsyncIterator[Notifications]:
    async with notification_service(bus) as service:
        yield service


@pytest.fixture(autouse=True)
def no_desktop_language(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge child inherits this environment: start from a desktop of no language."""
    for name in LOCALE_VARS:
        monkeypatch.delenv(name, raising=False)


def bridge_for(
    bus: SessionBus, live: Live, tmp_path: Path, locale: str | None, *flags: str
) -> BridgeProcess:
    token = mint_token(SECRET, "alice", 3600, locale=locale)
    bridge = BridgeProcess(
        bus, live.base_url, token, tmp_path / "state" / "bridge.json", tmp_path / "opened.txt"
    )
    bridge.argv += list(flags)
    return bridge


async def two_notifications(
    live: Live, bridge: BridgeProcess, desktop: Notifications
) -> tuple[Notified, Notified]:
    """A queue task of alice's role and a plain urgent task of her own, as notified."""
    async with live.producer() as c:
        put = await c.put("/api/v1/roles/approvers/members", json={"members": ["alice"]})
        assert put.status_code == 200, put.text
    bridge.start()
    try:
        await live_until(lambda: live.parts.hub.connection_count == 1)
        queued = {**task_body("q-1", "alice"), "owner": None, "role": "approvers"}
        plain = task_body("t-1", "alice", title="INV-1", process=None, record=None)
        async with live.producer() as c:
            assert (await c.post("/api/v1/tasks", json=queued)).status_code == 201
            created = await c.post("/api/v1/tasks", json={**plain, "priority": "urgent"})
            assert created.status_code == 201, created.text
        await desktop.wait(lambda: len(desktop.notified) == 2)
    finally:
        await bridge.stop()
    by_summary = {n.summary: n for n in desktop.notified}
    return by_summary["Approve q-1"], by_summary["INV-1"]


async def live_until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("language", "claim", "queue", "plain", "action"),
    [
        (
            "de",
            "de-AT",
            "Invoice approval · Acme · Warteschlange: approvers",
            "Ein Prozess braucht dich. · Dringend",
            "Aufgabe öffnen",
        ),
        (
            "fr",
            "fr",
            "Invoice approval · Acme · File : approvers",
            "Un processus a besoin de vous. · Urgent",
            "Ouvrir la tâche",
        ),
    ],
)
async def test_the_notifications_follow_the_tokens_locale_and_carry_no_english(
    embedded: Live,
    bus: SessionBus,
    desktop: Notifications,
    tmp_path: Path,
    language: str,
    claim: str,
    queue: str,
    plain: str,
    action: str,
) -> None:
    bridge = bridge_for(bus, embedded, tmp_path, claim)
    queued, own = await two_notifications(embedded, bridge, desktop)
    assert queued.body == queue and own.body == plain
    for note in (queued, own):
        assert note.actions[:2] == ["default", action]
        # The producer's own words (title, process, record) are not the bridge's to translate.
        ours = note.body.replace("Invoice approval · Acme · ", "")
        assert_no_english(language, "\n".join([ours, *note.actions]))


@pytest.mark.parametrize("claim", [None, "xx-YY", "not a locale!"])
async def test_an_unknown_or_missing_locale_reads_english(
    embedded: Live, bus: SessionBus, desktop: Notifications, tmp_path: Path, claim: str | None
) -> None:
    bridge = bridge_for(bus, embedded, tmp_path, claim)
    queued, own = await two_notifications(embedded, bridge, desktop)
    assert queued.body == "Invoice approval · Acme · Queue: approvers"
    assert own.body == "A process needs you. · Urgent"
    assert own.actions[:2] == ["default", "Open task"]


@pytest.mark.parametrize(
    ("claim", "flags", "action"),
    [
        ("de", ["--locale", "fr-CA"], "Ouvrir la tâche"),  # the flag wins
        ("fr", [], "Ouvrir la tâche"),  # then the token
        (None, [], "Aufgabe öffnen"),  # then the desktop's LANG
        (None, ["--locale", "xx"], "Aufgabe öffnen"),  # a flag of no language is passed over
    ],
)
async def test_the_locale_flag_wins_then_the_token_then_the_desktop(
    embedded: Live,
    bus: SessionBus,
    desktop: Notifications,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    claim: str | None,
    flags: list[str],
    action: str,
) -> None:
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    bridge = bridge_for(bus, embedded, tmp_path, claim, *flags)
    _, own = await two_notifications(embedded, bridge, desktop)
    assert own.actions[1] == action


def test_an_overdue_task_says_since_when_in_the_desktops_zone() -> None:
    task: Task = {
        "id": "t-1",
        "title": "INV-9",
        "owner": "alice",
        "due_at": "2026-12-01T09:30:00.000000Z",
        "overdue": True,
    }
    _, body = summary_and_body(task, Texts("de"))
    local = datetime(2026, 12, 1, 9, 30, tzinfo=UTC).astimezone()
    assert body == f"Ein Prozess braucht dich. · Überfällig seit 01.12.2026, {local:%H:%M}"


@pytest.mark.parametrize(
    ("environ", "chosen"),
    [
        ({"LANG": "fr_FR.UTF-8"}, "fr-FR"),
        ({"LANG": "de_DE.UTF-8", "LC_ALL": "fr_CA.UTF-8"}, "fr-CA"),
        ({"LANG": "C.UTF-8"}, "en"),
        ({"LANG": "POSIX"}, "en"),
        ({"LANG": "es_ES.UTF-8"}, "en"),
        ({}, "en"),
    ],
)
def test_the_desktops_language_is_read_as_posix_says(environ: dict[str, str], chosen: str) -> None:
    assert choose([desktop_locale(environ)]) == chosen


@pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "en"])
def test_every_bridge_text_is_translated_with_its_placeholders(language: str) -> None:
    catalog = catalogue(language)
    used = bridge_messages()
    assert "Open task" in used, "the extraction finds the bridge's texts"
    for message in used:
        entry = catalog.get(message)
        assert entry is not None and isinstance(entry.string, str) and entry.string, message
        assert set(PLACEHOLDER.findall(entry.string)) == set(PLACEHOLDER.findall(message))
