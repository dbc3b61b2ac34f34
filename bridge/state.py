"""What the bridge remembers across its restarts, and what to do for each feed message
(pure: no sockets, no D-Bus).

The state file (JSON, written atomically after every message) holds the last ``seq``
applied, the ids of the running tasks it knows (``known``) and, per task it raised a
notification for, the desktop's notification id (``shown``). So after a restart:

- a replay (``since`` = the saved seq) brings exactly the missed changes;
- a snapshot (the missed events are no longer kept) is compared with ``known``: tasks
  not known before are new (notified), shown tasks no longer running are closed;
- the very first snapshot (no state yet) only primes ``known``: what a person already
  had when they started the bridge is not news;
- a server heartbeat (``ping`` with ``feeds``) that disagrees with the saved seq or with
  how many tasks are ``known`` (a state file from another time, a bug) asks for a
  snapshot: the next connection goes without ``since`` and the snapshot repairs it.
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
    title: NotRequired[str]
    url: NotRequired[str | None]
    process: NotRequired[ProcessRef | None]
    record: NotRequired[RecordRef | None]


@dataclass(frozen=True, slots=True)
class Show:
    """Raise (or, with ``replaces``, update) the notification of ``task``."""

    task: Task
    replaces: NotificationId | None = None


@dataclass(frozen=True, slots=True)
class Close:
    task_id: str
    notification: NotificationId


Action = Show | Close
Verdict = Literal["applied", "gap", "ignored", "resync"]


@dataclass
class BridgeState:
    seq: int = 0
    primed: bool = False
    known: set[str] = field(default_factory=set)
    shown: dict[str, NotificationId] = field(default_factory=dict)
    resync: bool = False  # the next connection asks for a snapshot

    # ------------------------------------------------------------------ rules

    def apply(
        self, message: dict[str, Any], own_feed: str | None = None
    ) -> tuple[Verdict, list[Action]]:
        """The desktop actions for one server message. ``"gap"``: a seq is missing or
        repeated out of order; reconnect with ``since=self.seq``. ``"resync"``: the
        heartbeat for ``own_feed`` disagrees with this state; reconnect for a snapshot."""
        kind = message.get("type")
        if kind == "ping":
            return self._heartbeat(message, own_feed), []
        if kind == "snapshot":
            return "applied", self._snapshot(message)
        if kind == "synced":
            self.primed = True
            return "applied", []
        if kind not in ("task.added", "task.updated", "task.removed"):
            return "ignored", []
        seq = message["seq"]
        if seq <= self.seq:
            return "ignored", []  # a repeat
        if seq != self.seq + 1:
            return "gap", []
        self.seq = seq
        self.primed = True
        task: Task = message["task"]
        task_id = task["id"]
        if kind == "task.removed":
            self.known.discard(task_id)
            nid = self.shown.get(task_id)
            return "applied", [Close(task_id, nid)] if nid is not None else []
        self.known.add(task_id)
        if kind == "task.added" and task_id not in self.shown:
            return "applied", [Show(task)]
        if task_id in self.shown:
            return "applied", [Show(task, replaces=self.shown[task_id])]
        return "applied", []

    def _heartbeat(self, message: dict[str, Any], own_feed: str | None) -> Verdict:
        feeds = message.get("feeds")
        pos = feeds.get(own_feed) if isinstance(feeds, dict) and own_feed else None
        if not isinstance(pos, dict) or not self.primed:
            return "ignored"
        if pos.get("seq") == self.seq and pos.get("count") == len(self.known):
            return "ignored"
        self.resync = True
        return "resync"

    def _snapshot(self, message: dict[str, Any]) -> list[Action]:
        tasks: dict[str, Task] = {t["id"]: t for t in message["tasks"]}
        actions: list[Action] = []
        if self.primed:
            actions += [Show(t) for i, t in tasks.items() if i not in self.known]
        actions += [Close(i, nid) for i, nid in self.shown.items() if i not in tasks]
        self.known = set(tasks)
        self.seq = message["seq"]
        self.primed = True
        self.resync = False
        return actions

    def shown_as(self, task_id: str, notification: NotificationId) -> None:
        self.shown[task_id] = notification

    def closed(self, task_id: str) -> None:
        self.shown.pop(task_id, None)

    # ------------------------------------------------------------------ file

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "primed": self.primed,
            "known": sorted(self.known),
            "shown": self.shown,
            "resync": self.resync,
        }

    @classmethod
    def load(cls, path: Path) -> BridgeState:
        """The saved state, or a fresh one when the file is missing or unreadable."""
        try:
            data = json.loads(path.read_text())
            return cls(
                seq=int(data["seq"]),
                primed=bool(data["primed"]),
                known={str(i) for i in data["known"]},
                shown={str(k): v for k, v in dict(data["shown"]).items()},
                resync=bool(data.get("resync", False)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

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


def default_state_path(server_url: str, user: str) -> Path:
    """``$XDG_STATE_HOME/taskbell/bridge-<user>@<host_port>.json`` (one per server and
    person)."""
    from urllib.parse import urlsplit

    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    where = urlsplit(server_url).netloc.replace(":", "_") or "server"
    safe_user = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
    return Path(base) / "taskbell" / f"bridge-{safe_user}@{where}.json"
