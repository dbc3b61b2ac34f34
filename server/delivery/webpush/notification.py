"""What a push notification says, in the subscriber's language (pure: a task message and
``Texts`` in, words out). The service worker shows ``title`` and ``body`` as they come,
with ``lang``, so a lock screen reads the person's language without the worker knowing
any.

- ``title``: the task's title (the producer's words, not translated);
- ``body``, one line each: the process and record it belongs to (or "A process needs
  you."), a note when there is one (urgent; overdue since; postponed until; due in), and
  how many process tasks wait (the person's count).
"""

from __future__ import annotations

from datetime import datetime

from server.delivery.wire import PushNotification
from server.i18n import Texts
from server.wire import TaskJSON

TITLE_MAX = 200
PART_MAX = 200  # a process name or record title, on a lock screen


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def details(task: TaskJSON, texts: Texts) -> str:
    """The process and the record, or the panel's "A process needs you."."""
    process, record = task["process"], task["record"]
    parts = [
        process["name"] if process else None,
        (record["title"] or record["id"]) if record else None,
    ]
    named = [p[:PART_MAX] for p in parts if p]
    return " · ".join(named) if named else texts.gettext("A process needs you.")


def note(task: TaskJSON, texts: Texts, now: datetime) -> str | None:
    """Why the task is worth a look now, or None."""
    parts: list[str] = []
    if task["priority"] == "urgent":
        parts.append(texts.gettext("Urgent"))
    due = _instant(task["due_at"])
    until = _instant(task["postponed_until"])
    if task["status"] == "completed":
        parts.append(texts.gettext("Completed"))
    elif task["status"] == "canceled":
        parts.append(texts.gettext("Canceled"))
    elif task["status"] == "postponed" and until is not None:
        parts.append(texts.gettext("Postponed until {when}", when=texts.when(until)))
    elif due is not None and (task["overdue"] or due <= now):
        parts.append(texts.gettext("Overdue since {at}", at=texts.when(due)))
    elif due is not None:
        parts.append(
            texts.gettext(
                "Due {in} · {at}", **{"in": texts.relative(due - now)}, at=texts.when(due)
            )
        )
    return " · ".join(parts) if parts else None


def waiting(count: int, texts: Texts) -> str:
    """The panel's overview sentence: how many process tasks wait for the person."""
    if count <= 0:
        return texts.gettext("Nothing is waiting for you right now.")
    return texts.ngettext(
        "One process task is waiting for you.", "{n} process tasks are waiting for you.", count
    )


def notification(task: TaskJSON, count: int, texts: Texts, now: datetime) -> PushNotification:
    """The words of one push for ``task`` when the person has ``count`` tasks."""
    lines = [details(task, texts), note(task, texts, now), waiting(count, texts)]
    return {
        "title": task["title"][:TITLE_MAX],
        "body": "\n".join(line for line in lines if line),
        "lang": texts.tag,
    }
