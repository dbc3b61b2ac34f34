"""WAL checkpoints for SQLite, in a thread of their own.

The writer commits on the event loop's thread (``server/sqlite_driver.py``), so it must
not checkpoint there: copying the WAL back into the database file and syncing it takes
milliseconds to much more, and SQLite's automatic checkpoint runs inside the COMMIT that
crosses its threshold. The writer's connection therefore has ``wal_autocheckpoint=0``
and this thread, with its own connection, runs a PASSIVE checkpoint (it never waits for
readers or the writer, nor holds them up) whenever the WAL file changed since the last
one, at most every ``interval_s``. sqlite3 lets other threads (the loop) run while it
works. Without it the WAL would grow without end.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading

log = logging.getLogger("taskbell.db")

CHECKPOINT_INTERVAL_S = 0.1  # ~1,000 single changes/s write a few MB of WAL a second


class Checkpointer:
    def __init__(self, path: str, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.path = path
        self.interval_s = interval_s
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
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        self.done += 1

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
