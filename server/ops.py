"""Operations: every write Taskbell makes, as typed values.

The API, the timers and demo mode turn what they were asked into these; ``Service`` is
the only thing that runs them, each in one transaction, and only after commit publishes
what changed and wakes the delivery side.

- Task operations (``TaskOp``) change one task; any number of them share a transaction
  (group commit, batches), and each succeeds or fails on its own.
- Instance and definition operations (``ProcessOp``) change a process; ending an
  instance cancels its open steps in the same transaction.
- ``ResumeDue`` and ``PruneEvents`` are the clock's operations.

``kind`` names an operation in logs and webhook events; ``actor`` is the person who
acts (their user id), or None for a producer or the server's own clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from server.wire import TaskCreate, TaskPatch

RESUME_PAGE = 200  # the most postponed tasks one ``ResumeDue`` brings back


class InstanceStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELED = "canceled"
    ERROR = "error"


# ---------------------------------------------------------------- task operations


@dataclass(frozen=True, slots=True)
class CreateTask:
    body: TaskCreate
    kind: ClassVar[str] = "create"

    @property
    def id(self) -> str:
        return self.body.id

    @property
    def actor(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class UpdateTask:
    id: str
    patch: TaskPatch
    kind: ClassVar[str] = "update"

    @property
    def actor(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class CompleteTask:
    id: str
    actor: str | None = None
    kind: ClassVar[str] = "complete"


@dataclass(frozen=True, slots=True)
class CancelTask:
    id: str
    actor: str | None = None
    kind: ClassVar[str] = "cancel"


@dataclass(frozen=True, slots=True)
class PostponeTask:
    id: str
    until: datetime
    actor: str | None = None
    kind: ClassVar[str] = "postpone"


@dataclass(frozen=True, slots=True)
class ResumeTask:
    """Back to running: early by a person or a producer, or by the clock when due."""

    id: str
    actor: str | None = None
    kind: ClassVar[str] = "resume"


TaskOp = CreateTask | UpdateTask | CompleteTask | CancelTask | PostponeTask | ResumeTask


# ---------------------------------------------------------------- process operations


@dataclass(frozen=True, slots=True)
class StartInstance:
    id: str
    name: str
    expect_more: bool = False


@dataclass(frozen=True, slots=True)
class SetExpectMore:
    id: str
    expect_more: bool


@dataclass(frozen=True, slots=True)
class EndInstance:
    """End a running instance as ``status``; its open steps are canceled with it."""

    id: str
    status: InstanceStatus


@dataclass(frozen=True, slots=True)
class SetDisabled:
    """Disable (or enable again) new steps of a process definition, by name."""

    name: str
    disabled: bool


ProcessOp = StartInstance | SetExpectMore | EndInstance | SetDisabled


# ---------------------------------------------------------------- people


@dataclass(frozen=True, slots=True)
class RevokeUser:
    """Refuse every token of ``user`` issued up to now, and close their sockets."""

    user: str


# ---------------------------------------------------------------- the clock's operations


@dataclass(frozen=True, slots=True)
class ResumeDue:
    """Bring back up to ``limit`` postponed tasks whose time has come."""

    limit: int = RESUME_PAGE


@dataclass(frozen=True, slots=True)
class PruneEvents:
    """Forget feed events older than ``before``."""

    before: datetime
