"""The bridge's texts in the person's language: Babel message catalogues
(``bridge/locale/<lang>/LC_MESSAGES/taskbell-bridge.po``) with the panel's wording, and
dates through ``babel.dates`` in this desktop's own time zone.

Which language (``choose``): ``--locale``, else the token's ``locale`` claim, else the
desktop's (``LC_ALL``, ``LC_MESSAGES``, ``LANG``), else English; the first that names a
language with texts wins. The English texts are the message ids, so English needs no
catalogue. The server has the same loader (``server/i18n.py``): the bridge is a client
of the server and does not import it.
"""

from __future__ import annotations

import base64
import functools
import gettext
import io
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path

import orjson
from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "taskbell-bridge"
FALLBACK = "en"
LANGUAGES = ("en", "de", "fr")
TAG_MAX = 35


def known(tag: str | None) -> str | None:
    """A canonical tag ("de-AT") when ``tag`` names a language with texts, else None.
    Takes POSIX names too ("de_AT.UTF-8", "fr_FR@euro"); never raises."""
    if not isinstance(tag, str) or not tag.strip() or len(tag) > TAG_MAX:
        return None
    bare = tag.strip().split(".")[0].split("@")[0].replace("_", "-")
    try:
        parsed = Locale.parse(bare, sep="-")
    except (ValueError, TypeError, UnknownLocaleError):
        return None
    if parsed.language not in LANGUAGES:
        return None
    return "-".join(p for p in (parsed.language, parsed.script, parsed.territory) if p)


def choose(candidates: Iterable[str | None]) -> str:
    """The first of ``candidates`` with texts, else English."""
    for candidate in candidates:
        if (tag := known(candidate)) is not None:
            return tag
    return FALLBACK


def token_locale(token: str) -> str | None:
    """The token's ``locale`` claim (read without checking it: the server does that)."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return None
    value = claims.get("locale") if isinstance(claims, dict) else None
    return value if isinstance(value, str) else None


def desktop_locale(environ: Mapping[str, str]) -> str | None:
    """The desktop's language, as POSIX says to look it up ("C" and "POSIX" are none)."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            return None if value.split(".")[0] in ("C", "POSIX") else value
    return None


@functools.cache
def _translations(language: str) -> gettext.NullTranslations:
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == FALLBACK or not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


class Texts:
    """The texts of one language (``tag``, as ``choose`` gives it)."""

    def __init__(self, tag: str = FALLBACK) -> None:
        self.tag = known(tag) or FALLBACK
        self.locale = Locale.parse(self.tag, sep="-")
        self._t = _translations(self.locale.language)

    def gettext(self, message: str, **params: object) -> str:
        return self._t.gettext(message).format(**params)

    def when(self, at: datetime) -> str:
        """A date and time in this desktop's time zone ("01.12.2026, 15:05")."""
        local = at.astimezone()
        date = format_date(local, "medium", locale=self.locale)
        time = format_time(local, "short", locale=self.locale)
        return str(self.locale.datetime_formats["medium"]).format(time, date)
