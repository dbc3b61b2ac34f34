"""The panel in the person's language: German and French from the token's ``locale``
claim, else the browser's languages, else English; ``<html lang>`` names the language
shown, and no English of the panel's own is left on the main views (the producer's task
titles and decision labels are in the test's language here, so every English word found
is the panel's)."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from playwright.sync_api import Page, expect

from server.auth import ALGORITHM
from tests.browser.conftest import DESKTOP, TIMEZONE, Browsing
from tests.browser.panel import badge, item, settle
from tests.browser.support import SECRET, Producer

pytestmark = pytest.mark.browser


def token(user: str, locale: str | None, *, issued_ago: int = 0, ttl: int = 3600) -> str:
    """A user token as a host application mints it, with the person's language."""
    issued = int(time.time()) - issued_ago
    claims: dict[str, Any] = {"sub": user, "iat": issued, "exp": issued + ttl}
    if locale is not None:
        claims["locale"] = locale
    return jwt.encode(claims, SECRET, algorithm=ALGORITHM)


# What the producer sends, in the language under test.
WORK = {
    "de": {
        "own": "Rechnung RE-7 freigeben",
        "queue": "Vertrag von Initech prüfen",
        "standin": "Müller wegen der Verlängerung anrufen",
        "postponed": "Angebot für Globex überarbeiten",
        "completed": "Kundendaten pflegen",
        "process": "Rechnungsfreigabe",
        "record": ("Konto", "acc-1", "Müller GmbH"),
        "actions": [
            {"id": "approve", "label": "Freigeben", "comment": "none"},
            {"id": "reject", "label": "Ablehnen", "comment": "required"},
        ],
        "badge": ("1 Prozessaufgabe", "2 Prozessaufgaben", "3 Prozessaufgaben"),
        "tab": "Prozessaufgaben",
    },
    "fr": {
        "own": "Valider la facture FA-7",
        "queue": "Vérifier le contrat Initech",
        "standin": "Appeler Dupont pour le renouvellement",
        "postponed": "Revoir l'offre pour Globex",
        "completed": "Mettre à jour la fiche client",
        "process": "Validation des factures",
        "record": ("Compte", "acc-1", "Dupont SARL"),
        "actions": [
            {"id": "approve", "label": "Valider", "comment": "none"},
            {"id": "reject", "label": "Refuser", "comment": "required"},
        ],
        "badge": ("1 tâche de processus", "2 tâches de processus", "3 tâches de processus"),
        "tab": "Tâches de processus",
    },
}

# English alone keeps its own compact relative times ("5 min ago"); the other languages
# say them as Intl.RelativeTimeFormat does ("vor 5 Min.", "il y a 5 min").
ENGLISH_ONLY = {
    "time.minutesAgo",
    "time.hoursAgo",
    "time.inMinutes",
    "time.inHours",
    "time.inDays",
    "time.inWeeks",
    "time.inMonths",
}
PLACEHOLDER = re.compile(r"\{\w+\}")
WORD = re.compile(r"[^\W\d_]+")
# Visible text, aria-labels, titles and placeholders, without code samples (a URL or a
# command line such as "python -m server token" is the same in every language).
PAGE_TEXTS = """() => {
  let visible = document.body.innerText;
  for (const code of document.querySelectorAll("code")) {
    visible = visible.replaceAll(code.innerText, " ");
  }
  const out = [visible, document.title];
  for (const el of document.querySelectorAll("[aria-label], [title], [placeholder]")) {
    for (const name of ["aria-label", "title", "placeholder"]) {
      if (el.hasAttribute(name)) out.push(el.getAttribute(name));
    }
  }
  return out;
}"""


def catalogues(page: Page) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = page.evaluate(
        """async () => {
          const { CATALOGUES } = await import("/static/js/i18n.js");
          return JSON.parse(JSON.stringify(CATALOGUES));
        }"""
    )
    return found


def texts_of(entry: Any) -> list[str]:
    return [entry] if isinstance(entry, str) else [str(v) for v in entry.values()]


def words(catalogue: dict[str, Any]) -> set[str]:
    return {
        w.lower()
        for entry in catalogue.values()
        for text in texts_of(entry)
        for w in WORD.findall(PLACEHOLDER.sub(" ", text))
    }


def english_words(page: Page, language: str) -> set[str]:
    """The English catalogue's words longer than 3 letters that the other language does
    not use itself ("Taskbell", "Demo", "Urgent" in French)."""
    books = catalogues(page)
    return {w for w in words(books["en"]) if len(w) > 3} - words(books[language])


def expect_no_english(page: Page, english: set[str], language: str, names: list[str]) -> None:
    """No English word of the panel's own in the visible text, aria-labels, titles and
    placeholders; ``names`` (user ids, role ids) are the host's and taken out first."""
    assert page.evaluate("document.documentElement.lang") == language
    text = " ".join(page.evaluate(PAGE_TEXTS))
    for name in sorted(names, key=len, reverse=True):
        text = re.sub(re.escape(name), " ", text, flags=re.IGNORECASE)
    left = sorted({w.lower() for w in WORD.findall(text)} & english)
    assert not left, f"English left on the page in {language}: {left}"


@pytest.mark.parametrize("language", ["de", "fr"])
def test_the_main_views_speak_the_tokens_language(
    browsing: Browsing, producer: Producer, user: str, language: str, output_dir: Path
) -> None:
    work: dict[str, Any] = WORK[language]
    absent = f"{user}-weg"
    role = f"team-{uuid.uuid4().hex[:6]}"
    names = [absent, user, role]
    common = {"process": work["process"], "record": work["record"]}
    producer.set_members(role, [user])
    producer.substitute(absent, user)
    own = producer.create(
        user,
        work["own"],
        actions=work["actions"],
        priority="urgent",
        due_at=datetime.now(UTC) + timedelta(hours=2),
        **common,
    )
    later = producer.create(user, work["postponed"], **common)
    producer.postpone(later["id"], datetime.now(UTC) + timedelta(days=1))
    producer.complete(producer.create(user, work["completed"], **common)["id"])

    page = browsing.page()
    page.goto(f"{browsing.base_url}/#token={token(user, language)}&route=/")
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    english = english_words(page, language)
    assert {"process", "tasks", "postponed", "activities"} <= english
    expect(page.locator("html")).to_have_attribute("lang", language)
    expect(badge(page)).to_have_attribute("aria-label", work["badge"][0])
    expect(page.get_by_test_id("tab-running")).to_contain_text(work["tab"])

    # Live: a queue task and one of the absent person's, while the panel is open.
    producer.create_for_role(role, work["queue"], **common)
    expect(badge(page)).to_have_attribute("aria-label", work["badge"][1])
    producer.create(absent, work["standin"], **common)
    expect(badge(page)).to_have_attribute("aria-label", work["badge"][2])
    expect(page.get_by_test_id("feed-section")).to_have_count(2)
    expect(page.get_by_test_id("standin-item")).to_have_count(1)
    expect(page.get_by_test_id("recent").locator("li")).to_have_count(2)
    settle(page)
    expect_no_english(page, english, language, names)
    page.screenshot(path=str(output_dir / f"panel-lang-{language}.png"))

    card = item(page, own["id"])
    # The Postpone menu.
    card.get_by_test_id("postpone").click()
    expect(page.get_by_test_id("postpone-menu")).to_be_visible()
    expect_no_english(page, english, language, names)
    page.keyboard.press("Escape")
    # A decision that needs a comment: the form and its complaint about a blank one.
    card.locator('[data-outcome="reject"]').click()
    card.get_by_test_id("decide-submit").click()
    expect(card.get_by_test_id("decide-error")).to_be_visible()
    expect_no_english(page, english, language, names)
    card.get_by_test_id("decide-cancel").click()
    # A decision in its undo window.
    card.locator('[data-outcome="approve"]').click()
    expect(card.get_by_test_id("undo")).to_be_visible()
    expect_no_english(page, english, language, names)
    card.get_by_test_id("undo").click()
    expect(card.get_by_test_id("pending")).to_have_count(0)
    # A toast (with its Undo): postponed for an hour.
    card.get_by_test_id("postpone").click()
    page.get_by_test_id("postpone-1h").click()
    expect(page.get_by_test_id("toast")).to_be_visible()
    expect(badge(page)).to_have_attribute("aria-label", work["badge"][1])
    expect_no_english(page, english, language, names)

    page.get_by_test_id("tab-postponed").click()
    expect(page.get_by_test_id("postponed-list").locator("li")).to_have_count(2)
    settle(page)
    expect_no_english(page, english, language, names)

    page.evaluate("window.location.hash = '#/activities'")
    expect(page.get_by_test_id("activity-item")).to_have_count(3)
    settle(page)
    expect_no_english(page, english, language, names)
    page.screenshot(path=str(output_dir / f"panel-lang-{language}-activities.png"))

    page.evaluate("window.location.hash = '#/activities?status=canceled'")
    expect(page.locator("#main .empty:not([hidden])")).to_be_visible()
    expect_no_english(page, english, language, names)

    entity, record_id, _ = work["record"]
    page.evaluate(f"window.location.hash = '#/records/{entity}/{record_id}'")
    expect(page.get_by_test_id("record-step").nth(1)).to_be_visible()
    page.get_by_test_id("process-button").click()
    expect(page.get_by_test_id("process-chooser")).to_be_visible()
    settle(page)
    expect_no_english(page, english, language, names)
    page.screenshot(path=str(output_dir / f"panel-lang-{language}-record.png"))

    refused = browsing.page()
    refused.goto(f"{browsing.base_url}/#token={token(user, language, issued_ago=7200)}")
    expect(refused.get_by_test_id("token-refused")).to_be_visible()
    expect_no_english(refused, english, language, names)
    refused.screenshot(path=str(output_dir / f"panel-lang-{language}-refused.png"))


@pytest.mark.parametrize(
    ("claim", "browser_locale", "lang", "label"),
    [
        (None, "de-DE", "de-DE", "1 Prozessaufgabe"),
        (None, "fr-CA", "fr-CA", "1 tâche de processus"),
        ("de", "fr-FR", "de", "1 Prozessaufgabe"),
        ("not a locale!", "fr-FR", "fr-FR", "1 tâche de processus"),
        ("tlh", "en-US", "en-US", "1 process task"),
        ("tlh", "ja-JP", "en", "1 process task"),
    ],
)
def test_without_a_known_locale_claim_the_browsers_language_or_english_is_used(
    browsing: Browsing,
    producer: Producer,
    user: str,
    claim: str | None,
    browser_locale: str,
    lang: str,
    label: str,
) -> None:
    producer.create(user, "Aufgabe · tâche · task")
    ctx = browsing.browser.new_context(
        viewport=DESKTOP,  # type: ignore[arg-type]
        timezone_id=TIMEZONE,
        locale=browser_locale,
    )
    browsing.contexts.append(ctx)
    page = browsing.page(ctx)
    page.goto(f"{browsing.base_url}/#token={token(user, claim)}&route=/")
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    expect(page.locator("html")).to_have_attribute("lang", lang)
    expect(badge(page)).to_have_attribute("aria-label", label)


def test_every_catalogue_has_the_english_keys_placeholders_and_plural_forms(
    browsing: Browsing,
) -> None:
    page = browsing.page()
    page.goto(f"{browsing.base_url}/")  # any page of the origin: the modules are imported
    books = catalogues(page)
    english = books["en"]
    for language in ("de", "fr"):
        book = books[language]
        assert set(book) - set(english) == set(), language
        assert set(english) - set(book) == ENGLISH_ONLY, language
        for key, entry in book.items():
            wanted = {m for t in texts_of(english[key]) for m in PLACEHOLDER.findall(t)}
            found = {m for t in texts_of(entry) for m in PLACEHOLDER.findall(t)}
            assert found == wanted, (language, key)
            assert isinstance(entry, str) == isinstance(english[key], str), (language, key)
            if not isinstance(entry, str):
                assert "other" in entry, (language, key)
