"""WAL checkpoints for SQLite, in a thread of their own.

The writer commits on the event loop's thread (``server/sqlite_driver.py``), so it must
not checkpoint there: copying the WAL back into the database file and syncing it takes
milliseconds to much more, and SQLite's automatic checkpoint runs inside the COMMIT that
crosses its threshold. The writer's connection therefore has ``wal_autocheckpoint=0``
and this thread, with its own connection, runs a PASSIVE checkpoint (it never waits for
readers or the writer, nor holds them up) whenever the WAL file changed since the last
one. How often adapts to the write rate so that a checkpoint copies about what SQLite's
automatic one would (``TARGET_FRAMES``, its default threshold): a checkpoint that found
fewer frames waits twice as long before the next, one that found more half as long,
between ``MIN_INTERVAL_S`` and ``MAX_INTERVAL_S`` (checkpointing more often than needed
copies the same hot pages again and again). sqlite3 lets other threads (the loop) run
while it works. Without it the WAL would grow without end.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

log = logging.getLogger("taskbell.db")

TARGET_FRAMES = 1000  # pages per checkpoint (SQLite's own wal_autocheckpoint default)
MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 1.0


class Checkpointer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.interval_s = MIN_INTERVAL_S
        self.done = 0  # checkpoints run (for tests)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqlite-checkpoints", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.done += 1
        frames = int(row[1]) if row and row[1] is not None else 0  # (busy, frames, copied)
        if frames < TARGET_FRAMES:
            self.interval_s = min(self.interval_s * 2, MAX_INTERVAL_S)
        else:
            self.interval_s = max(self.interval_s / 2, MIN_INTERVAL_S)

    def _loop(self) -> None:
        conn: sqlite3.Connection | None = None
        seen: tuple[int, int] | None = None
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    st = os.stat(self.path + "-wal")
                except OSError:
                    continue  # no WAL (yet): nothing to copy back
                mark = (st.st_mtime_ns, st.st_size)
                if mark == seen:
                    continue
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=1, isolation_level=None)
                    self.checkpoint(conn)
                    seen = mark  # (the WAL as it was before: a write meanwhile shows next)
                except sqlite3.Error as exc:
                    log.warning("checkpoint failed: %s", exc)
        finally:
            if conn is not None:
                conn.close()
