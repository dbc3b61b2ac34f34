"""The engine's own state in one SQLite file (``ENGINE_DB``): the truth across restarts.

- ``instances``: each process instance with its workflow, serialized by SpiffWorkflow's
  serializer, saved after every change.
- ``steps``: each Taskbell task the engine made for a user task (its id, the SpiffWorkflow
  task it stands for, the exact body sent, what the step's form saved).
- ``outbox``: the calls to Taskbell that a change needs, written in the same transaction
  as the change and sent in order afterwards, so a crash neither loses nor repeats a step
  (each call is idempotent in Taskbell, so sending one again after a crash is harmless).
- ``webhooks_seen``: the ``webhook-id`` of every delivery acted on (repeats are dropped).
- ``meta``: the webhook endpoint's id and secret, the key that signs step-page links.

One connection, used only from the event loop's thread: every change is one transaction
(``with store.tx():``), and nothing awaits inside one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
  id TEXT PRIMARY KEY,
  process TEXT NOT NULL,
  name TEXT NOT NULL,
  status TEXT NOT NULL,
  workflow TEXT NOT NULL,
  started_at REAL NOT NULL,
  ended_at REAL,
  end_reason TEXT
);
CREATE INDEX IF NOT EXISTS instances_status ON instances (status);
CREATE TABLE IF NOT EXISTS steps (
  id TEXT PRIMARY KEY,
  instance_id TEXT NOT NULL,
  spiff_task_id TEXT NOT NULL UNIQUE,
  spec TEXT NOT NULL,
  owner TEXT NOT NULL,  -- '' for a step offered to a role (see body.role)
  title TEXT NOT NULL,
  status TEXT NOT NULL,
  body TEXT NOT NULL,
  form TEXT NOT NULL DEFAULT '{}',
  due_at TEXT,
  follows TEXT,
  created_at REAL NOT NULL,
  ended_at REAL,
  completed_by TEXT
);
CREATE INDEX IF NOT EXISTS steps_instance ON steps (instance_id);
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  instance_id TEXT,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  body TEXT,
  status TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT,
  created_at REAL NOT NULL,
  sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, seq);
CREATE TABLE IF NOT EXISTS webhooks_seen (id TEXT PRIMARY KEY, received_at REAL NOT NULL);
"""


@dataclass(frozen=True)
class InstanceRow:
    id: str
    process: str
    name: str
    status: str  # running | completed | canceled | error
    workflow: str
    started_at: float
    ended_at: float | None
    end_reason: str | None


@dataclass(frozen=True)
class StepRow:
    id: str
    instance_id: str
    spiff_task_id: str
    spec: str
    owner: str
    title: str
    status: str  # open | completed | canceled
    body: dict[str, Any]
    form: dict[str, Any]
    due_at: str | None
    follows: str | None  # the step whose completion made this one
    created_at: float
    ended_at: float | None
    completed_by: str | None

    @property
    def role(self) -> str | None:
        """The role queue the step was offered to (``owner`` is then empty)."""
        role = self.body.get("role")
        return str(role) if role else None

    @property
    def audience(self) -> str:
        """Who the step is for: the owner, or ``role:<id>``."""
        return self.owner or f"role:{self.role}"


@dataclass(frozen=True)
class Call:
    """One queued call to Taskbell."""

    seq: int
    instance_id: str | None
    method: str
    path: str
    body: dict[str, Any] | None
    attempts: int


def _step(row: sqlite3.Row) -> StepRow:
    return StepRow(
        id=row["id"],
        instance_id=row["instance_id"],
        spiff_task_id=row["spiff_task_id"],
        spec=row["spec"],
        owner=row["owner"],
        title=row["title"],
        status=row["status"],
        body=orjson.loads(row["body"]),
        form=orjson.loads(row["form"]),
        due_at=row["due_at"],
        follows=row["follows"],
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        completed_by=row["completed_by"],
    )


def _instance(row: sqlite3.Row) -> InstanceRow:
    return InstanceRow(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (sqlite3.Row)


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[None]:
        """One transaction: committed when the block ends, rolled back on an error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # ------------------------------------------------------------------ instances

    def insert_instance(self, id: str, process: str, name: str, workflow: str) -> None:
        self.db.execute(
            "INSERT INTO instances (id, process, name, status, workflow, started_at)"
            " VALUES (?, ?, ?, 'running', ?, ?)",
            (id, process, name, workflow, time.time()),
        )

    def save_workflow(self, id: str, workflow: str) -> None:
        self.db.execute("UPDATE instances SET workflow = ? WHERE id = ?", (workflow, id))

    def end_instance(self, id: str, status: str, reason: str | None) -> None:
        self.db.execute(
            "UPDATE instances SET status = ?, ended_at = ?, end_reason = ? WHERE id = ?",
            (status, time.time(), reason, id),
        )

    def instance(self, id: str) -> InstanceRow | None:
        row = self.db.execute("SELECT * FROM instances WHERE id = ?", (id,)).fetchone()
        return None if row is None else _instance(row)

    def running(self) -> list[tuple[str, str]]:
        """(id, name) of every running instance, without their workflows."""
        rows = self.db.execute(
            "SELECT id, name FROM instances WHERE status = 'running' ORDER BY started_at"
        ).fetchall()
        return [(r["id"], r["name"]) for r in rows]

    def instances(self, status: str | None = None) -> list[InstanceRow]:
        if status is None:
            rows = self.db.execute("SELECT * FROM instances ORDER BY started_at").fetchall()
        else:
            rows = self.db.execute(
                "SELECT * FROM instances WHERE status = ? ORDER BY started_at", (status,)
            ).fetchall()
        return [_instance(r) for r in rows]

    # ------------------------------------------------------------------ steps

    def insert_step(
        self,
        *,
        id: str,
        instance_id: str,
        spiff_task_id: str,
        spec: str,
        owner: str,
        title: str,
        body: dict[str, Any],
        due_at: str | None,
        follows: str | None,
    ) -> None:
        self.db.execute(
            "INSERT INTO steps (id, instance_id, spiff_task_id, spec, owner, title, status,"
            " body, due_at, follows, created_at) VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?)",
            (
                id,
                instance_id,
                spiff_task_id,
                spec,
                owner,
                title,
                orjson.dumps(body).decode(),
                due_at,
                follows,
                time.time(),
            ),
        )

    def end_step(self, id: str, status: str, completed_by: str | None = None) -> None:
        self.db.execute(
            "UPDATE steps SET status = ?, ended_at = ?, completed_by = ? WHERE id = ?",
            (status, time.time(), completed_by, id),
        )

    def save_form(self, id: str, form: dict[str, Any]) -> None:
        self.db.execute("UPDATE steps SET form = ? WHERE id = ?", (orjson.dumps(form).decode(), id))

    def step(self, id: str) -> StepRow | None:
        row = self.db.execute("SELECT * FROM steps WHERE id = ?", (id,)).fetchone()
        return None if row is None else _step(row)

    def steps(self, instance_id: str) -> list[StepRow]:
        rows = self.db.execute(
            "SELECT * FROM steps WHERE instance_id = ? ORDER BY created_at, id", (instance_id,)
        ).fetchall()
        return [_step(r) for r in rows]

    def count_steps(self, instance_id: str, spec: str) -> int:
        row = self.db.execute(
            "SELECT count(*) AS n FROM steps WHERE instance_id = ? AND spec = ?",
            (instance_id, spec),
        ).fetchone()
        return int(row["n"])

    # ------------------------------------------------------------------ outbox

    def enqueue(
        self, instance_id: str | None, method: str, path: str, body: dict[str, Any] | None
    ) -> None:
        self.db.execute(
            "INSERT INTO outbox (instance_id, method, path, body, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                instance_id,
                method,
                path,
                None if body is None else orjson.dumps(body).decode(),
                time.time(),
            ),
        )

    def next_call(self) -> Call | None:
        row = self.db.execute(
            "SELECT * FROM outbox WHERE status = 'pending' ORDER BY seq LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        body = None if row["body"] is None else orjson.loads(row["body"])
        return Call(
            row["seq"], row["instance_id"], row["method"], row["path"], body, row["attempts"]
        )

    def call_done(self, seq: int, status: str, error: str | None = None) -> None:
        self.db.execute(
            "UPDATE outbox SET status = ?, sent_at = ?, last_error = ?,"
            " attempts = attempts + 1 WHERE seq = ?",
            (status, time.time(), error, seq),
        )

    def call_failed_attempt(self, seq: int, error: str) -> None:
        self.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
            (error, seq),
        )

    def pending_calls(self) -> int:
        row = self.db.execute("SELECT count(*) AS n FROM outbox WHERE status = 'pending'")
        return int(row.fetchone()["n"])

    def calls(self, instance_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT seq, method, path, status, attempts, last_error FROM outbox"
            " WHERE instance_id = ? ORDER BY seq",
            (instance_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    # ------------------------------------------------------------------ webhooks

    def seen(self, webhook_id: str) -> bool:
        row = self.db.execute("SELECT 1 FROM webhooks_seen WHERE id = ?", (webhook_id,))
        return row.fetchone() is not None

    def mark_seen(self, webhook_id: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO webhooks_seen (id, received_at) VALUES (?, ?)",
            (webhook_id, time.time()),
        )
