"""Desktop notifications behind one small interface.

- ``Freedesktop`` (Linux): the org.freedesktop.Notifications service on the session
  D-Bus, through dbus-fast. Notification ids are the server's own integers, which the
  bridge keeps in its state file, so a notification raised before a restart of the
  bridge can still be updated (``replaces_id``) and closed afterwards.
- ``Portable`` (macOS, Windows): desktop-notifier. Its ids live only as long as the
  process, so notifications from before a bridge restart are not closed there.

Clicking a notification (its default action, "Open task") calls ``on_open(url)``. The
words are in the person's language (``bridge.i18n``); the task's own (title, process,
record) are the producer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from bridge.i18n import Texts
from bridge.state import NotificationId, RecordRef, Task

log = logging.getLogger("taskbell.bridge")

APP_NAME = "Taskbell"
BUS_NAME = "org.freedesktop.Notifications"
OBJECT_PATH = "/org/freedesktop/Notifications"


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def summary_and_body(task: Task, texts: Texts) -> tuple[str, str]:
    """Title, and the process and record it belongs to (and the queue it waits in, for an
    unclaimed task of a role), or "A process needs you."; then urgent and overdue."""
    process = task.get("process")
    record: RecordRef = task.get("record") or {}
    name = process.get("name") if process else None
    role = task.get("role") if task.get("owner", "") is None else None
    queue = texts.gettext("Queue: {role}", role=role) if role else None
    parts = [str(p) for p in (name, record.get("title") or record.get("id"), queue) if p]
    if not parts:
        parts.append(texts.gettext("A process needs you."))
    if task.get("priority") == "urgent":
        parts.append(texts.gettext("Urgent"))
    due = _instant(task.get("due_at"))
    if due is not None and task.get("overdue"):
        parts.append(texts.gettext("Overdue since {at}", at=texts.when(due)))
    return str(task["title"]), " · ".join(parts)


class Desktop(Protocol):
    async def start(self) -> None:
        """Connect; raises ``OSError`` (or the library's error) when there is no
        notification service."""
        ...

    async def show(
        self, task: Task, url: str, replaces: NotificationId | None
    ) -> NotificationId: ...

    async def close(self, notification: NotificationId) -> None: ...

    async def stop(self) -> None: ...


class Freedesktop:
    """org.freedesktop.Notifications over the session bus (``DBUS_SESSION_BUS_ADDRESS``)."""

    def __init__(
        self, on_open: Callable[[str], None], fallback_url: str, texts: Texts | None = None
    ) -> None:
        self.on_open = on_open
        self.fallback_url = fallback_url
        self.texts = texts or Texts()
        self._bus: Any = None
        self._iface: Any = None
        self._urls: dict[int, str] = {}

    async def start(self) -> None:
        from dbus_fast import BusType
        from dbus_fast.aio import MessageBus

        self._bus = await MessageBus(bus_type=BusType.SESSION).connect()
        introspection = await self._bus.introspect(BUS_NAME, OBJECT_PATH)
        proxy = self._bus.get_proxy_object(BUS_NAME, OBJECT_PATH, introspection)
        self._iface = proxy.get_interface(BUS_NAME)
        with contextlib.suppress(AttributeError):
            self._iface.on_action_invoked(self._on_action)
        with contextlib.suppress(AttributeError):
            self._iface.on_notification_closed(self._on_closed)

    async def show(self, task: Task, url: str, replaces: NotificationId | None) -> NotificationId:
        from dbus_fast import Variant

        summary, body = summary_and_body(task, self.texts)
        actions = ["default", self.texts.gettext("Open task")]
        replaces_id = replaces if isinstance(replaces, int) else 0
        hints = {
            "urgency": Variant("y", 1),
            "category": Variant("s", "presence"),
            "desktop-entry": Variant("s", "taskbell"),
        }
        nid = int(
            await self._iface.call_notify(
                APP_NAME, replaces_id, "", summary, body, actions, hints, -1
            )
        )
        self._urls[nid] = url
        return nid

    async def close(self, notification: NotificationId) -> None:
        from dbus_fast.errors import DBusError

        if not isinstance(notification, int):
            return
        self._urls.pop(notification, None)
        with contextlib.suppress(DBusError):  # already closed by the person
            await self._iface.call_close_notification(notification)

    def _on_action(self, nid: int, action: str) -> None:
        # The reply to Notify and a quick click can arrive in one read: look the URL up
        # after the awaiting ``show`` has stored it.
        if action == "default":
            asyncio.get_running_loop().call_soon(self._open, nid)

    def _open(self, nid: int) -> None:
        # A notification raised before a restart of the bridge opens the panel.
        self.on_open(self._urls.get(nid, self.fallback_url))

    def _on_closed(self, nid: int, reason: int) -> None:
        self._urls.pop(nid, None)

    async def stop(self) -> None:
        if self._bus is not None:
            self._bus.disconnect()


class Portable:
    """desktop-notifier, for the platforms without freedesktop notifications."""

    def __init__(self, on_open: Callable[[str], None], texts: Texts | None = None) -> None:
        self.on_open = on_open
        self.texts = texts or Texts()
        self._notifier: Any = None

    async def start(self) -> None:
        from desktop_notifier import DesktopNotifier

        self._notifier = DesktopNotifier(app_name=APP_NAME)

    async def show(self, task: Task, url: str, replaces: NotificationId | None) -> NotificationId:
        if replaces is not None:
            await self.close(replaces)
        summary, body = summary_and_body(task, self.texts)
        identifier: str = await self._notifier.send(
            title=summary, message=body, on_clicked=lambda: self.on_open(url)
        )
        return identifier

    async def close(self, notification: NotificationId) -> None:
        with contextlib.suppress(Exception):  # unknown to this process (raised before)
            await self._notifier.clear(str(notification))

    async def stop(self) -> None:
        return None


def make_desktop(
    kind: str, on_open: Callable[[str], None], panel_url: str, texts: Texts | None = None
) -> Desktop:
    """``kind``: "freedesktop", "portable", or "auto" (freedesktop on Linux)."""
    if kind == "auto":
        kind = "freedesktop" if sys.platform.startswith("linux") else "portable"
    if kind == "freedesktop":
        return Freedesktop(on_open, panel_url, texts)
    return Portable(on_open, texts)
