"""The server's own texts in the person's language: Babel message catalogues
(``server/locale/<lang>/LC_MESSAGES/taskbell.po``), plurals by the catalogue's own
``Plural-Forms``, and dates and times through ``babel.dates``.

Which language: the token's ``locale`` claim (a BCP 47 tag, "de-AT"), kept with whatever
the server later writes for that person (a push subscription stores it); a page opened
without a token (the demo's task page) follows the browser's ``Accept-Language``. ``negotiate``
picks the catalogue by the tag's language and keeps the whole tag for dates, so "de-AT"
reads German with Austrian dates; a tag that is malformed or of a language without a
catalogue is English. The same languages as the panel (``web/js/i18n/``), with the
panel's wording where the panel has the text.

The English texts are the message ids themselves (gettext's way), so English needs no
catalogue and a message missing from a catalogue reads English instead of blank.
``.po`` files are compiled in memory on first use: nothing built is kept in git or needs
an install step. Error messages of the API stay English (codes are the contract).
"""

from __future__ import annotations

import functools
import gettext
import io
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "taskbell"
FALLBACK = "en"
LANGUAGES = ("en", "de", "fr")
"""Languages with texts (English is the message ids); the panel's are the same."""

TAG_MAX = 35  # a BCP 47 tag longer than this is not one a person sends


def negotiate(tag: str | None) -> str:
    """A canonical tag ("de-AT") for ``tag`` when its language has texts, else "en".
    Takes "de_AT" too; never raises."""
    if not isinstance(tag, str) or not tag.strip() or len(tag) > TAG_MAX:
        return FALLBACK
    try:
        parsed = Locale.parse(tag.strip().replace("_", "-"), sep="-")
    except (ValueError, TypeError, UnknownLocaleError):
        return FALLBACK
    if parsed.language not in LANGUAGES:
        return FALLBACK
    return "-".join(p for p in (parsed.language, parsed.script, parsed.territory) if p)


ACCEPT_MAX = 500  # characters of an Accept-Language header read (browsers send ~100)


def from_accept_language(header: str | None) -> str:
    """The most wanted language of an ``Accept-Language`` header that has texts (by
    ``q``, then order), as ``negotiate`` gives it; English when none has."""
    wanted: list[tuple[float, int, str]] = []
    for i, item in enumerate((header or "")[:ACCEPT_MAX].split(",")):
        tag, _, params = item.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and q > 0:
            wanted.append((-q, i, tag))
    for _, _, tag in sorted(wanted):
        if (chosen := negotiate(tag)) != FALLBACK or tag.lower().startswith(FALLBACK):
            return chosen
    return FALLBACK


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def _translations(language: str) -> gettext.NullTranslations:
    path = catalogue_path(language)
    if language == FALLBACK or not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


class Texts:
    """The texts of one person's language. ``gettext`` and ``ngettext`` take the English
    text as message id and fill ``{name}`` placeholders from keyword arguments; the
    dates are written in ``zone`` (UTC unless the person's own zone is known) and say
    which zone that is."""

    def __init__(self, tag: str | None, zone: tzinfo = UTC) -> None:
        self.tag = negotiate(tag)
        self.locale = Locale.parse(self.tag, sep="-")
        self.language = self.locale.language
        self.zone = zone
        self._t = _translations(self.language)

    def gettext(self, message: str, **params: object) -> str:
        return self._t.gettext(message).format(**params)

    def ngettext(self, singular: str, plural: str, n: int, **params: object) -> str:
        """The form for ``n`` by the catalogue's plural rule; ``{n}`` is filled in."""
        return self._t.ngettext(singular, plural, n).format(n=n, **params)

    def when(self, at: datetime) -> str:
        """A date and time ("1 Dec 2026, 14:05 UTC", "01.12.2026, 14:05 UTC")."""
        local = at.astimezone(self.zone)
        date = format_date(local, "medium", locale=self.locale)
        pattern = f"{self.locale.time_formats['short'].pattern} z"
        time = format_time(local, pattern, tzinfo=self.zone, locale=self.locale)
        return str(self.locale.datetime_formats["medium"]).format(time, date)

    def relative(self, delta: timedelta) -> str:
        """``delta`` from now ("in 2 hours", "vor 3 Tagen")."""
        return format_timedelta(delta, add_direction=True, locale=self.locale)


@functools.lru_cache(maxsize=64)
def texts_for(tag: str | None) -> Texts:
    """The (shared, immutable) texts of ``tag`` in UTC."""
    return Texts(tag)
