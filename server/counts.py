"""A feed's counts: how many of its tasks are running (``count``, the badge) and how many
are postponed, as pure arithmetic on a task's state before and after one change.

The rules (docs/protocol.md, "Counts"):

- A task adds 1 to ``running`` of its feed while it is running there and 1 to
  ``postponed`` while it is postponed there; final tasks count nowhere.
- So one change moves each count of a feed by (after) - (before), and every feed whose
  counts move gets one event (one seq): the event that changed its running tasks, or,
  when only ``postponed`` moved (a task created already postponed, a postponed task
  canceled, completed, reassigned, claimed or unclaimed), a ``task.removed`` naming a
  task that was not running there (clients drop nothing; the counts say what changed).

Nothing here knows about SQL or sockets: ``server.transitions`` calls ``postponed_moves``
for every decided change, ``server.writes`` adds the deltas to the feed rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.wire import CountsJSON, Status


@dataclass(frozen=True, slots=True)
class Place:
    """Where one task counts: its feed's key and its status."""

    key: str
    status: str


def postponed_moves(before: Place | None, after: Place | None) -> dict[str, int]:
    """Per feed key, how ``postponed`` moves when a task goes from ``before`` to
    ``after`` (None: no such task). Feeds whose count stays are left out."""
    moves: dict[str, int] = {}
    if before is not None and before.status == Status.POSTPONED:
        moves[before.key] = moves.get(before.key, 0) - 1
    if after is not None and after.status == Status.POSTPONED:
        moves[after.key] = moves.get(after.key, 0) + 1
    return {k: v for k, v in moves.items() if v}


def counts_json(running: int, postponed: int) -> CountsJSON:
    """The wire ``counts`` of a feed."""
    return {"running": running, "postponed": postponed}
