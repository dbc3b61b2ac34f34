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
acts (their user id), or None for a producer or the server's own clock. Every
operation belongs to one ``tenant`` (the caller's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from server.feeds import DEFAULT_TENANT
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
    tenant: str = DEFAULT_TENANT
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
    tenant: str = DEFAULT_TENANT
    kind: ClassVar[str] = "update"

    @property
    def actor(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class CompleteTask:
    """Complete a task; ``outcome`` (one of its actions) and ``comment`` say what was
    decided."""

    id: str
    actor: str | None = None
    tenant: str = DEFAULT_TENANT
    outcome: str | None = None
    comment: str | None = None
    kind: ClassVar[str] = "complete"


@dataclass(frozen=True, slots=True)
class CancelTask:
    id: str
    actor: str | None = None
    tenant: str = DEFAULT_TENANT
    kind: ClassVar[str] = "cancel"


@dataclass(frozen=True, slots=True)
class PostponeTask:
    id: str
    until: datetime
    actor: str | None = None
    tenant: str = DEFAULT_TENANT
    kind: ClassVar[str] = "postpone"


@dataclass(frozen=True, slots=True)
class ResumeTask:
    """Back to running: early by a person or a producer, or by the clock when due."""

    id: str
    actor: str | None = None
    tenant: str = DEFAULT_TENANT
    by_clock: bool = False  # it fell due (not a person's or a producer's call)
    kind: ClassVar[str] = "resume"


@dataclass(frozen=True, slots=True)
class ClaimTask:
    """``user`` takes a task offered to a role (``actor``: ``user`` themselves, or None
    for a producer claiming on someone's behalf)."""

    id: str
    user: str
    actor: str | None = None
    tenant: str = DEFAULT_TENANT
    kind: ClassVar[str] = "claim"


@dataclass(frozen=True, slots=True)
class UnclaimTask:
    """Put a claimed task back into its role's queue."""

    id: str
    actor: str | None = None
    tenant: str = DEFAULT_TENANT
    kind: ClassVar[str] = "unclaim"


@dataclass(frozen=True, slots=True)
class FlagOverdue:
    """The clock: the task's due time has passed."""

    id: str
    tenant: str = DEFAULT_TENANT
    kind: ClassVar[str] = "overdue"

    @property
    def actor(self) -> None:
        return None


TaskOp = (
    CreateTask
    | UpdateTask
    | CompleteTask
    | CancelTask
    | PostponeTask
    | ResumeTask
    | ClaimTask
    | UnclaimTask
    | FlagOverdue
)


# ---------------------------------------------------------------- process operations


@dataclass(frozen=True, slots=True)
class StartInstance:
    id: str
    name: str
    expect_more: bool = False
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class SetExpectMore:
    id: str
    expect_more: bool
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class EndInstance:
    """End a running instance as ``status``; its open steps are canceled with it."""

    id: str
    status: InstanceStatus
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class SetDisabled:
    """Disable (or enable again) new steps of a process definition, by name."""

    name: str
    disabled: bool
    tenant: str = DEFAULT_TENANT


ProcessOp = StartInstance | SetExpectMore | EndInstance | SetDisabled


# ---------------------------------------------------------------- people


@dataclass(frozen=True, slots=True)
class RevokeUser:
    """Refuse every token of ``user`` issued up to now, and close their sockets."""

    user: str
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class MarkSeen:
    """``user`` has seen each named feed up to its seq ("new since you last looked",
    ``server.seen``): marks move forward only."""

    user: str
    feeds: tuple[tuple[str, int], ...]
    tenant: str = DEFAULT_TENANT


# ---------------------------------------------------------------- audiences


@dataclass(frozen=True, slots=True)
class SetMembers:
    """Make ``members`` the members of ``role`` (creating the role if need be)."""

    role: str
    members: tuple[str, ...]
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class AddSubstitution:
    """``substitute`` stands in for ``user`` from ``starts_at`` until ``ends_at``."""

    id: str
    user: str
    substitute: str
    starts_at: datetime
    ends_at: datetime
    tenant: str = DEFAULT_TENANT


@dataclass(frozen=True, slots=True)
class EndSubstitution:
    """Delete a substitution; one in force ends at once."""

    id: str
    tenant: str = DEFAULT_TENANT


AudienceOp = SetMembers | AddSubstitution | EndSubstitution


# ---------------------------------------------------------------- the clock's operations


@dataclass(frozen=True, slots=True)
class ResumeDue:
    """Bring back up to ``limit`` postponed tasks whose time has come."""

    limit: int = RESUME_PAGE


@dataclass(frozen=True, slots=True)
class MarkOverdue:
    """Flag up to ``limit`` open tasks whose due time has passed."""

    limit: int = RESUME_PAGE


@dataclass(frozen=True, slots=True)
class MoveSubstitutions:
    """Start the substitutions whose time has come and end those whose time is over."""

    limit: int = RESUME_PAGE


@dataclass(frozen=True, slots=True)
class PruneEvents:
    """Forget feed events older than ``before``."""

    before: datetime
