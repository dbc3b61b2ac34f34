"""What a connection is sent when it starts following feeds: pure functions on the views
the hub read (no sockets, no database).

- On joining: if every followed feed was replayed, each feed's missed events (each in
  seq order) then one ``synced``; otherwise one ``snapshot`` of every feed. Both carry
  the own feed's ``seq``, ``count`` and ``counts`` at top level (the own feed is listed
  first) and ``feeds``: every followed feed's position (each with its ``counts``).
- While connected: ``feed.joined`` (a feed's running tasks and position) and
  ``feed.left``.
"""

from __future__ import annotations

from server.counts import counts_json
from server.feedlog import Replay, Snapshot
from server.wire import (
    FeedJoinedMessage,
    FeedLeftMessage,
    FeedPosJSON,
    SnapshotMessage,
    SyncedMessage,
    TaskJSON,
    dumps,
)

Views = dict[str, Snapshot | Replay]  # wire feed name → its view


def first_messages(feeds: list[str], views: Views) -> list[str]:
    """The encoded messages a joining connection gets, for ``feeds`` (own first) whose
    ``views`` are all replays or all snapshots (a replay among snapshots is an error)."""
    own = views[feeds[0]]
    positions: dict[str, FeedPosJSON] = {f: position(views[f]) for f in feeds}
    snapshots = [v for f in feeds if isinstance(v := views[f], Snapshot)]
    if snapshots:
        if len(snapshots) != len(feeds):
            raise ValueError("a snapshot of some feeds needs snapshots of all")
        tasks: list[TaskJSON] = [t for v in snapshots for t in v.tasks]
        snap: SnapshotMessage = {
            "type": "snapshot",
            "seq": own.seq,
            "count": own.count,
            "counts": counts_json(own.count, own.postponed),
            "feeds": positions,
            "tasks": tasks,
        }
        return [dumps(snap)]
    out = [m for f in feeds if isinstance(v := views[f], Replay) for m in v.messages]
    synced: SyncedMessage = {
        "type": "synced",
        "seq": own.seq,
        "count": own.count,
        "counts": counts_json(own.count, own.postponed),
        "feeds": positions,
    }
    out.append(dumps(synced))
    return out


def joined_message(feed: str, view: Snapshot) -> str:
    joined: FeedJoinedMessage = {
        "type": "feed.joined",
        "feed": feed,
        "seq": view.seq,
        "count": view.count,
        "counts": counts_json(view.count, view.postponed),
        "tasks": view.tasks,
    }
    return dumps(joined)


def position(view: Snapshot | Replay) -> FeedPosJSON:
    """A feed's position as ``feeds`` of a snapshot, synced or heartbeat lists it."""
    return pos_json(view.seq, view.count, view.postponed)


def pos_json(seq: int, count: int, postponed: int) -> FeedPosJSON:
    return {"seq": seq, "count": count, "counts": counts_json(count, postponed)}


def left_message(feed: str) -> str:
    left: FeedLeftMessage = {"type": "feed.left", "feed": feed}
    return dumps(left)
