"""Per-owner sequencing, as a pure object: no sockets, no database, no tasks.

The hub keeps one ``Sequencer`` per owner with local connections and asks it, for every
seq that arrives, what to do; the hub does the I/O (fan out, read the log, close). The
rules:

- Nothing is delivered before the first connection's view (snapshot or replay) is in:
  until then an arriving seq is ``EARLY`` and only remembered (``seen_max``).
- ``seq <= delivered`` is a ``DUPLICATE`` (dropped), ``delivered + 1`` is delivered at
  once (``DELIVER``: the state has advanced when the verdict is returned), anything
  higher is a ``GAP``: the hub reads the log after ``delivered`` and hands the rows to
  ``take_log``.
- A joining connection reads its view from the database while events keep arriving.
  ``fits`` says whether the view can be brought up to date from the ``recent`` events
  (else the join reads again); ``start_from`` returns what it still needs.
- Rows read from the log that skip a seq mean the log no longer holds it (pruned):
  connections behind it must resync from a snapshot (``LogStep.lost``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from server.changes import Logged

RECENT = 16  # events kept per owner to bring a just-joined connection up to date


class Verdict(Enum):
    DELIVER = "deliver"
    DUPLICATE = "duplicate"
    GAP = "gap"
    EARLY = "early"


@dataclass(frozen=True, slots=True)
class LogStep:
    """One row from the log to fan out. ``lost``: the seqs before it are gone from the
    log, so connections that have not seen ``seq - 1`` cannot be brought up to date."""

    seq: int
    count: int
    message: str
    lost: bool
    postponed: int = 0


class Sequencer:
    __slots__ = ("delivered", "recent", "seen_max")

    def __init__(self, recent: int = RECENT) -> None:
        self.delivered: int | None = None
        self.seen_max = 0
        self.recent: deque[Logged] = deque(maxlen=recent)

    def offer(self, seq: int, count: int, message: str, postponed: int = 0) -> Verdict:
        """What to do with one arriving event (its seq, counts and message)."""
        if self.delivered is None:
            self.seen_max = max(self.seen_max, seq)
            return Verdict.EARLY
        if seq <= self.delivered:
            return Verdict.DUPLICATE
        if seq == self.delivered + 1:
            self._advance(Logged(seq, count, message, postponed))
            return Verdict.DELIVER
        self.seen_max = max(self.seen_max, seq)
        return Verdict.GAP

    def take_log(self, rows: Iterable[Logged]) -> list[LogStep]:
        """The rows of a log read (in seq order) that are new, each to fan out."""
        steps: list[LogStep] = []
        for row in rows:
            delivered = self.delivered
            if delivered is None or row.seq <= delivered:
                continue
            lost = row.seq > delivered + 1
            steps.append(LogStep(row.seq, row.count, row.message, lost, row.postponed))
            self._advance(row)
        return steps

    def fits(self, view_seq: int) -> bool:
        """Whether a view read at ``view_seq`` can be used: it is not behind what was
        delivered, or ``recent`` still holds every event after it."""
        if self.delivered is None or view_seq >= self.delivered:
            return True
        missing = self.delivered - view_seq
        return (
            bool(self.recent) and self.recent[0].seq <= view_seq + 1 and len(self.recent) >= missing
        )

    def start_from(self, view_seq: int) -> list[Logged]:
        """A connection whose view is at ``view_seq`` joins: the recent events it still
        needs. The first view sets where delivery starts."""
        if self.delivered is None:
            self.delivered = view_seq
            return []
        return [e for e in self.recent if e.seq > view_seq]

    def behind(self, latest: int) -> bool:
        """Whether ``latest`` (from an arriving seq, a view or the database) is past
        what was delivered, so the log must be read."""
        return self.delivered is not None and max(self.seen_max, latest) > self.delivered

    def _advance(self, event: Logged) -> None:
        self.delivered = event.seq
        self.recent.append(event)
