"""The wire format: typed request bodies, task objects and WebSocket messages.

Everything that crosses the network is described here, and only here. Inbound bodies
are pydantic models with ``extra="forbid"`` (unknown fields are a 422, not silently
dropped). Outbound messages are TypedDicts encoded once with orjson.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypedDict, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from server.errors import BadRequest, CloseCode, Unprocessable

_M = TypeVar("_M", bound=BaseModel)

Id = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\s/]+$")]
Owner = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^\S+$")]
Title = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
Url = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Status(StrEnum):
    RUNNING = "running"
    POSTPONED = "postponed"
    CANCELED = "canceled"
    COMPLETED = "completed"


FINAL_STATUSES = frozenset({Status.CANCELED, Status.COMPLETED})
OPEN_STATUSES = frozenset({Status.RUNNING, Status.POSTPONED})


class Kind(StrEnum):
    ACTIVITY = "activity"
    EMAIL = "email"
    EDIT_RECORD = "edit_record"
    PAGE = "page"


class EventType(StrEnum):
    ADDED = "task.added"
    UPDATED = "task.updated"
    REMOVED = "task.removed"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class ProcessRef(_Strict):
    instance_id: Id
    name: Text


class RecordRef(_Strict):
    entity: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\s/]+$")]
    id: Id
    title: Annotated[str, StringConstraints(max_length=500)] | None = None


class TaskCreate(_Strict):
    """Body of ``POST /tasks``."""

    id: Id
    owner: Owner
    title: Title
    kind: Kind = Kind.ACTIVITY
    process: ProcessRef | None = None
    record: RecordRef | None = None
    url: Url | None = None
    postponed_until: datetime | None = None


class TaskPatch(_Strict):
    """Body of ``PATCH /tasks/{id}``: any subset of these fields."""

    title: Title | None = None
    url: Url | None = None
    record: RecordRef | None = None
    owner: Owner | None = None
    postponed_until: datetime | None = None


class Postpone(_Strict):
    until: datetime


class CreateOp(_Strict):
    op: Literal["create"]
    task: TaskCreate


class UpdateOp(_Strict):
    op: Literal["update"]
    id: Id
    changes: TaskPatch


class FinishOp(_Strict):
    op: Literal["complete", "cancel", "resume"]
    id: Id


class PostponeOp(_Strict):
    op: Literal["postpone"]
    id: Id
    until: datetime


BatchOp = Annotated[CreateOp | UpdateOp | FinishOp | PostponeOp, Field(discriminator="op")]


class Batch(_Strict):
    ops: Annotated[list[BatchOp], Field(min_length=1, max_length=500)]


# ---------------------------------------------------------------- outbound shapes


class ProcessJSON(TypedDict):
    instance_id: str
    name: str


class RecordJSON(TypedDict):
    entity: str
    id: str
    title: str | None


class TaskJSON(TypedDict):
    id: str
    owner: str
    title: str
    kind: str
    status: str
    process: ProcessJSON | None
    record: RecordJSON | None
    url: str | None
    postponed_until: str | None
    created_at: str
    updated_at: str


class EventMessage(TypedDict):
    type: str
    seq: int
    count: int
    task: TaskJSON
    reason: str | None


class SnapshotMessage(TypedDict):
    type: Literal["snapshot"]
    seq: int
    count: int
    tasks: list[TaskJSON]


class SyncedMessage(TypedDict):
    type: Literal["synced"]
    seq: int
    count: int


class FeedPosJSON(TypedDict):
    seq: int
    count: int


class HeartbeatMessage(TypedDict):
    """The server's ping: where each followed feed stands for this connection (the seq
    it was last given and the count that went with it), so a client whose own state
    differs resynchronises by itself."""

    type: Literal["ping"]
    feeds: dict[str, FeedPosJSON]


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def iso(dt: datetime | None) -> str | None:
    """UTC ISO-8601 with a Z, or None."""
    if dt is None:
        return None
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_body(raw: bytes, model: type[_M]) -> _M:
    """Parse a JSON request body into ``model``.

    Raises ``BadRequest`` for bytes that are not JSON and ``Unprocessable`` for JSON of
    the wrong shape (with pydantic's field errors, minus the offending input values).
    """
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc.msg}", code="malformed_json") from None
    if data is None:
        raise BadRequest("a JSON body is required", code="malformed_json")
    return validate(data, model)


def validate(data: object, model: type[_M]) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise Unprocessable("the body does not have the expected shape", errors=errors) from None


# ---------------------------------------------------------------- client → server (WebSocket)


class AuthMessage(_Strict):
    type: Literal["auth"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    since: Annotated[int, Field(ge=0)] | None = None


class PingMessage(_Strict):
    type: Literal["ping"]


class PongMessage(_Strict):
    type: Literal["pong"]


ClientMessage = Annotated[AuthMessage | PingMessage | PongMessage, Field(discriminator="type")]


class _ClientEnvelope(BaseModel):
    model_config = ConfigDict(extra="forbid")
    msg: ClientMessage


class ProtocolViolation(Exception):
    """A client message that ends the connection with ``code``."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_client_message(text: str | bytes) -> AuthMessage | PingMessage | PongMessage:
    """Decode one WebSocket frame from a client; raises ``ProtocolViolation`` (1008)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolViolation(CloseCode.BAD_MESSAGE, "message is not valid JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ProtocolViolation(CloseCode.BAD_MESSAGE, "message must be an object with a type")
    try:
        return _ClientEnvelope.model_validate({"msg": data}).msg
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        if first["type"] == "union_tag_invalid":
            reason = f"unknown message type {str(data['type'])[:40]!r}"
        else:
            loc = ".".join(str(p) for p in first["loc"][2:]) or "message"
            reason = f"bad {data['type'][:40]} message: {loc}: {first['msg']}"
        raise ProtocolViolation(CloseCode.BAD_MESSAGE, reason[:120]) from None
