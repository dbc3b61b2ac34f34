"""The change workload: which task change to make next, as plain values.

Owners are visited round-robin so every owner's feed moves at the same pace. An owner
whose acknowledged open tasks reach ``keep_open`` gets its oldest one completed,
otherwise a new task is created for it, so each badge counter goes up and down. A task
is completed only after its create was acknowledged, so a complete never races its own
create across concurrent requests.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypedDict

ChangeKind = Literal["create", "complete"]
# What a subscriber sees for a change: (message type, task id).
EventKey = tuple[str, str]


class ProcessRef(TypedDict):
    instance_id: str
    name: str


class TaskBody(TypedDict):
    id: str
    owner: str
    title: str
    kind: str
    process: ProcessRef
    record: None
    url: str


class CreateOp(TypedDict):
    op: Literal["create"]
    task: TaskBody


class CompleteOp(TypedDict):
    op: Literal["complete"]
    id: str


BatchOp = CreateOp | CompleteOp


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    task_id: str
    owner: str
    number: int

    @property
    def event_key(self) -> EventKey:
        """The event every socket of the owner must receive for this change."""
        return ("task.added" if self.kind == "create" else "task.removed", self.task_id)

    def task_body(self) -> TaskBody:
        return {
            "id": self.task_id,
            "owner": self.owner,
            "title": f"bench {self.number}",
            "kind": "activity",
            "process": {"instance_id": f"p-{self.task_id}", "name": "Bench"},
            "record": None,
            "url": f"https://crm.example/tasks/{self.task_id}",
        }

    def batch_op(self) -> BatchOp:
        if self.kind == "create":
            return {"op": "create", "task": self.task_body()}
        return {"op": "complete", "id": self.task_id}

    def request(self) -> tuple[str, str, TaskBody | None]:
        """(method, path under /api/v1, JSON body) for the one-change-per-request path."""
        if self.kind == "create":
            return "POST", "/tasks", self.task_body()
        return "POST", f"/tasks/{self.task_id}/complete", None


def owner_names(count: int, prefix: str = "bench-u") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(count)]


class Workload:
    """Hands out the next change; learns from acknowledgements which tasks are open."""

    def __init__(self, owners: Sequence[str], run_id: str, keep_open: int = 2) -> None:
        if not owners:
            raise ValueError("at least one owner is needed")
        self._owners = list(owners)
        self._run_id = run_id
        self._keep_open = keep_open
        self._open: dict[str, deque[str]] = {owner: deque() for owner in self._owners}
        self._next_owner = 0
        self._next_number = 0

    def next_change(self) -> Change:
        owner = self._owners[self._next_owner]
        self._next_owner = (self._next_owner + 1) % len(self._owners)
        number = self._next_number
        self._next_number += 1
        open_tasks = self._open[owner]
        if len(open_tasks) >= self._keep_open:
            return Change("complete", open_tasks.popleft(), owner, number)
        return Change("create", f"{self._run_id}-{number}", owner, number)

    def acknowledge(self, change: Change, succeeded: bool) -> None:
        """Record the server's answer: an acknowledged create becomes completable."""
        if change.kind == "create" and succeeded:
            self._open[change.owner].append(change.task_id)
