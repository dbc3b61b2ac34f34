"""Feeds: what a person is shown, and how each is named.

A **feed** is a sequence of changes with its own ``seq`` and ``count`` (docs/protocol.md,
"Feeds"). On the wire a feed is named ``user:<id>`` (a person's own tasks) or
``role:<id>`` (a role's queue); it always belongs to one **tenant**. Inside the server
(the hub, the broker, the feed log) a feed is one string, its **key**:
``<tenant>/<feed>``, e.g. ``default/user:alice``. Tenant names hold no ``/``, so a key
splits back without doubt.

A person follows their own feed, the feed of every role they are a member of, and the
own feed of every person they stand in for while the substitution is in force.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

DEFAULT_TENANT = "default"
USER = "user:"
ROLE = "role:"

TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_TENANT = re.compile(TENANT_PATTERN)


def is_tenant(name: str) -> bool:
    """A tenant name: 1-64 letters, digits, ``_ . -``, starting with a letter or digit."""
    return bool(_TENANT.match(name))


def user_feed(user: str) -> str:
    return USER + user


def role_feed(role: str) -> str:
    return ROLE + role


def key_of(tenant: str, feed: str) -> str:
    """The internal key of ``feed`` (``user:…`` / ``role:…``) in ``tenant``."""
    return f"{tenant}/{feed}"


def user_key(tenant: str, user: str) -> str:
    return f"{tenant}/{USER}{user}"


def role_key(tenant: str, role: str) -> str:
    return f"{tenant}/{ROLE}{role}"


def split_key(key: str) -> tuple[str, str]:
    """``(tenant, feed)`` of a key."""
    tenant, _, feed = key.partition("/")
    return tenant, feed


def per_tenant(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """``(tenant, name)`` pairs as each tenant (in order) with its names (sorted, each
    once): a statement that reads many rows runs once per tenant."""
    grouped: dict[str, set[str]] = {}
    for tenant, name in pairs:
        grouped.setdefault(tenant, set()).add(name)
    return [(tenant, sorted(names)) for tenant, names in sorted(grouped.items())]


def is_feed(feed: str) -> bool:
    """A wire feed name: ``user:<id>`` or ``role:<id>`` with a non-empty id."""
    return (feed.startswith(USER) and len(feed) > len(USER)) or (
        feed.startswith(ROLE) and len(feed) > len(ROLE)
    )
