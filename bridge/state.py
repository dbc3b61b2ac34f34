"""What the bridge remembers across its restarts, and what to do for each feed message
(pure: no sockets, no D-Bus).

A connection follows several **feeds** (docs/protocol.md, "Several feeds"): the person's
own (``user:<id>``), each role queue they are in (``role:<r>``) and each person they
stand in for (``user:<other>``). The state file (JSON, written atomically after every
message) holds, per feed, the last ``seq`` applied and the ids of the running tasks it
knows (``known``), and, per task it raised a notification for, the desktop's notification
id (``shown``). So after a restart:

- a replay (``since`` = the own feed's saved seq, ``since_feeds`` the others') brings
  exactly the missed changes of every feed;
- a snapshot (the missed events are no longer kept) is compared with what was known:
  tasks not known before in any feed are new (notified), shown tasks no longer running in
  any feed are closed;
- the very first snapshot (no state yet) only primes ``known``: what a person already
  had when they started the bridge is not news;
- ``feed.joined`` brings a feed's tasks (new ones are notified), ``feed.left`` closes the
  notifications of that feed's tasks (unless another feed still has them);
- the next step (docs/protocol.md, "Work-surface fields"): a shown task that is
  completed keeps its notification for a hand-off window (``Close`` with ``after``,
  remembered in ``handoff``); a ``task.added`` whose ``follows`` names it in that time
  replaces that notification (one notification that changes, not two); else the client
  closes it when the window ends;
- a server heartbeat (``ping`` with ``feeds``) that disagrees with any feed's saved seq,
  with how many of its tasks are ``known``, or with its last ``counts.postponed`` (a
  state file from another time, a bug) asks for a snapshot: the next connection goes
  without ``since`` and the snapshot repairs it;
- every message that carries ``counts`` updates the feed's ``postponed`` (what a tray
  tooltip can show). An event that moves only the postponed count is a ``task.removed``
  of a task the feed did not hold as running: nothing to close, only the count moves.

A message without ``feed`` (a server from before several feeds) is the own feed's.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

NotificationId = int | str


class ProcessRef(TypedDict):
    name: str


class RecordRef(TypedDict, total=False):
    id: str
    title: str | None


class Task(TypedDict):
    """The bridge's copy of the part of a task message it uses (docs/protocol.md: the
    server sends every field; the bridge needs only the id and reads the rest with
    defaults)."""

    id: str
    owner: NotRequired[str | None]
    role: NotRequired[str | None]
    title: NotRequired[str]
    url: NotRequired[str | None]
    process: NotRequired[ProcessRef | None]
    record: NotRequired[RecordRef | None]
    status: NotRequired[str]
    follows: NotRequired[str | None]
    priority: NotRequired[str]
    due_at: NotRequired[str | None]
    overdue: NotRequired[bool]


@dataclass(frozen=True, slots=True)
class Show:
    """Raise (or, with ``replaces``, update) the notification of ``task``."""

    task: Task
    replaces: NotificationId | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """Close the notification of ``task_id``; with ``after`` (seconds), only when no
    next step has replaced it by then (the client keeps the timer)."""

    task_id: str
    notification: NotificationId
    after: float = 0.0


HANDOFF_SECONDS = 10.0
"""How long a completed step's notification waits for the step that follows it."""


Action = Show | Close
Verdict = Literal["applied", "gap", "ignored", "resync"]

EVENTS = ("task.added", "task.updated", "task.removed")


def feed_of(task: Task, own: str) -> str:
    """Which feed a snapshot's task belongs to: an unclaimed queue task to its role's
    feed, any other to its owner's (the own feed when the task does not say)."""
    owner, role = task.get("owner"), task.get("role")
    if owner is None and role:
        return f"role:{role}"
    return f"user:{owner}" if owner else own


@dataclass
class FeedState:
    """One followed feed: the last seq applied, the running tasks it holds, and its
    postponed count as the last message with ``counts`` gave it."""

    seq: int = 0
    known: set[str] = field(default_factory=set)
    postponed: int = 0


@dataclass
class BridgeState:
    own: str = "user:"
    feeds: dict[str, FeedState] = field(default_factory=dict)
    primed: bool = False
    shown: dict[str, NotificationId] = field(default_factory=dict)
    resync: bool = False  # the next connection asks for a snapshot
    # Completed steps whose notification waits for the next step: task id → its id.
    handoff: dict[str, NotificationId] = field(default_factory=dict)
    handoff_s: float = HANDOFF_SECONDS

    @property
    def seq(self) -> int:
        """The own feed's last applied seq (``since`` when resuming)."""
        own = self.feeds.get(self.own)
        return own.seq if own else 0

    @property
    def postponed(self) -> int:
        """Postponed tasks in every followed feed, as the server last counted them."""
        return sum(f.postponed for f in self.feeds.values())

    @property
    def known(self) -> set[str]:
        """Every running task known, in any feed."""
        return {i for f in self.feeds.values() for i in f.known}

    def since_feeds(self) -> dict[str, int]:
        """The other feeds' last applied seqs (``since_feeds`` when resuming)."""
        return {name: f.seq for name, f in sorted(self.feeds.items()) if name != self.own}

    # ------------------------------------------------------------------ rules

    def apply(self, message: dict[str, Any]) -> tuple[Verdict, list[Action]]:
        """The desktop actions for one server message. ``"gap"``: a seq of some feed is
        missing, or an event names a feed not followed; reconnect with ``since`` and
        ``since_feeds``. ``"resync"``: the heartbeat disagrees with this state, or a
        replay did not end where ``synced`` says; reconnect for a snapshot."""
        kind = message.get("type")
        if kind == "ping":
            return self._heartbeat(message), []
        if kind == "snapshot":
            return "applied", self._snapshot(message)
        if kind == "synced":
            return self._synced(message)
        if kind == "feed.joined":
            return "applied", self._joined(message)
        if kind == "feed.left":
            return "applied", self._left(str(message["feed"]))
        if kind not in EVENTS:
            return "ignored", []
        name = message.get("feed") or self.own
        feed = self.feeds.get(name)
        if feed is None:
            return "gap", []
        seq = message["seq"]
        if seq <= feed.seq:
            return "ignored", []  # a repeat
        if seq != feed.seq + 1:
            return "gap", []
        feed.seq = seq
        feed.postponed = _postponed(message, feed.postponed)
        self.primed = True
        task: Task = message["task"]
        task_id = task["id"]
        if kind == "task.removed":
            feed.known.discard(task_id)
            claimer = f"user:{task.get('owner')}"
            if message.get("reason") == "claimed" and claimer in self.feeds:
                # It moves to a feed followed here (the person's own, say), where its
                # task.added updates this same notification: nothing to close.
                return "applied", []
            completed = message.get("reason") == "completed" or task.get("status") == "completed"
            waits = completed and self.handoff_s > 0 and task_id in self.shown
            if waits and task_id not in self.known:
                nid = self.shown.pop(task_id)
                self.handoff[task_id] = nid
                return "applied", [Close(task_id, nid, after=self.handoff_s)]
            return "applied", self._close_if_gone([task_id])
        was_known = task_id in self.known
        feed.known.add(task_id)
        if task_id in self.shown:
            return "applied", [Show(task, replaces=self.shown[task_id])]
        follows = task.get("follows")
        if kind == "task.added" and not was_known and follows in self.handoff:
            return "applied", [Show(task, replaces=self.handoff.pop(str(follows)))]
        if kind == "task.added" and not was_known:
            return "applied", [Show(task)]
        return "applied", []

    def _close_if_gone(self, ids: list[str]) -> list[Action]:
        """Close the notifications of ``ids`` that no followed feed holds any more (a
        claimed task leaves the queue and enters the own feed: it stays shown)."""
        still = self.known
        return [Close(i, self.shown[i]) for i in ids if i in self.shown and i not in still]

    def _positions(self, message: dict[str, Any]) -> dict[str, dict[str, Any]]:
        feeds = message.get("feeds")
        if isinstance(feeds, dict) and feeds:
            return {str(k): v for k, v in feeds.items() if isinstance(v, dict)}
        return {
            self.own: {
                "seq": message["seq"],
                "count": message.get("count", 0),
                "counts": message.get("counts"),
            }
        }

    def _heartbeat(self, message: dict[str, Any]) -> Verdict:
        feeds = message.get("feeds")
        if not isinstance(feeds, dict) or self.own not in feeds or not self.primed:
            return "ignored"
        agree = set(feeds) == set(self.feeds) and all(
            isinstance(pos, dict)
            and pos.get("seq") == self.feeds[name].seq
            and pos.get("count") == len(self.feeds[name].known)
            and _postponed(pos, self.feeds[name].postponed) == self.feeds[name].postponed
            for name, pos in feeds.items()
        )
        if agree:
            return "ignored"
        self.resync = True
        return "resync"

    def _snapshot(self, message: dict[str, Any]) -> list[Action]:
        positions = self._positions(message)
        feeds = {
            name: FeedState(int(pos["seq"]), postponed=_postponed(pos, 0))
            for name, pos in positions.items()
        }
        feeds.setdefault(self.own, FeedState(int(message["seq"])))
        tasks: dict[str, Task] = {}
        for t in message["tasks"]:
            name = feed_of(t, self.own) if "feeds" in message else self.own
            feeds.get(name, feeds[self.own]).known.add(t["id"])
            tasks[t["id"]] = t
        actions: list[Action] = []
        if self.primed:
            before = self.known
            actions += [Show(t) for i, t in tasks.items() if i not in before]
        actions += [Close(i, nid) for i, nid in self.shown.items() if i not in tasks]
        actions += [Close(i, nid) for i, nid in self.handoff.items()]
        self.handoff = {}
        self.feeds = feeds
        self.primed = True
        self.resync = False
        return actions

    def _synced(self, message: dict[str, Any]) -> tuple[Verdict, list[Action]]:
        positions = self._positions(message)
        for name, pos in positions.items():
            feed = self.feeds.get(name)
            if feed is None or feed.seq != pos.get("seq"):
                self.resync = True
                return "resync", []
            feed.postponed = _postponed(pos, feed.postponed)
        self.primed = True
        gone = [name for name in self.feeds if name not in positions and name != self.own]
        actions: list[Action] = []
        for name in gone if "feeds" in message else []:
            actions += self._left(name)
        return "applied", actions

    def _joined(self, message: dict[str, Any]) -> list[Action]:
        name = str(message["feed"])
        before = self.known
        tasks: list[Task] = list(message["tasks"])
        old = self.feeds.get(name, FeedState()).known
        self.feeds[name] = FeedState(
            int(message["seq"]), {t["id"] for t in tasks}, _postponed(message, 0)
        )
        self.primed = True
        actions: list[Action] = [Show(t) for t in tasks if t["id"] not in before]
        return actions + self._close_if_gone(sorted(old))

    def _left(self, name: str) -> list[Action]:
        if name == self.own or name not in self.feeds:
            return []
        feed = self.feeds.pop(name)
        return self._close_if_gone(sorted(feed.known))

    def shown_as(self, task_id: str, notification: NotificationId) -> None:
        self.shown[task_id] = notification

    def closed(self, task_id: str) -> None:
        self.shown.pop(task_id, None)
        self.handoff.pop(task_id, None)

    # ------------------------------------------------------------------ file

    def to_json(self) -> dict[str, Any]:
        return {
            "own": self.own,
            "feeds": {
                name: {"seq": f.seq, "known": sorted(f.known), "postponed": f.postponed}
                for name, f in sorted(self.feeds.items())
            },
            "primed": self.primed,
            "shown": self.shown,
            "resync": self.resync,
            "handoff": self.handoff,
        }

    @classmethod
    def load(cls, path: Path, own: str | None = None) -> BridgeState:
        """The saved state, or a fresh one when the file is missing or unreadable. A
        file from before several feeds (top-level ``seq`` and ``known``) becomes the own
        feed's state; ``own`` (``user:<id>`` of the token) names the own feed."""
        try:
            data = json.loads(path.read_text())
            name = own or str(data.get("own") or "user:")
            if own and data.get("own", own) != own:
                return cls(own=own)  # another person's state: start afresh
            if "feeds" in data:
                feeds = {
                    str(k): FeedState(
                        int(v["seq"]), {str(i) for i in v["known"]}, int(v.get("postponed", 0))
                    )
                    for k, v in dict(data["feeds"]).items()
                }
            else:
                feeds = {name: FeedState(int(data["seq"]), {str(i) for i in data["known"]})}
            return cls(
                own=name,
                feeds=feeds,
                primed=bool(data["primed"]),
                shown={str(k): v for k, v in dict(data["shown"]).items()},
                resync=bool(data.get("resync", False)),
                handoff={str(k): v for k, v in dict(data.get("handoff") or {}).items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return cls(own=own or "user:")

    def save(self, path: Path) -> None:
        """Write atomically (a crash leaves the old file or the new one, never half)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".bridge-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.to_json(), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _postponed(message: dict[str, Any], otherwise: int) -> int:
    """``counts.postponed`` of a message or feed position; ``otherwise`` when it carries
    none (a server from before counts) or a malformed one."""
    counts = message.get("counts")
    value = counts.get("postponed") if isinstance(counts, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else otherwise


def default_state_path(server_url: str, user: str) -> Path:
    """``$XDG_STATE_HOME/taskbell/bridge-<user>@<host_port>.json`` (one per server and
    person)."""
    from urllib.parse import urlsplit

    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    where = urlsplit(server_url).netloc.replace(":", "_") or "server"
    safe_user = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
    return Path(base) / "taskbell" / f"bridge-{safe_user}@{where}.json"
