"""The wire format: typed request bodies, task objects and WebSocket messages.

Everything that crosses the network is described here, and only here. Inbound bodies
are pydantic models with ``extra="forbid"`` (unknown fields are a 422, not silently
dropped). Outbound messages are TypedDicts encoded once with orjson.

JSON is parsed once by ``loads``, which refuses a repeated key; the field types bodies
are made of (names, texts, urls, instants) and their rules are in ``server.fields``
(docs/protocol.md, "Input rules").
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, TypedDict, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from server.errors import BadRequest, CloseCode, Unprocessable
from server.feeds import is_feed
from server.fields import Entity, Id, Instant, Owner, RecordTitle, Text, Title, Url, no_nul

_M = TypeVar("_M", bound=BaseModel)

# Error types that are answered with their own code rather than ``invalid``.
_OWN_CODES = frozenset({"bad_time", "bad_time_zone"})


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


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class CommentRule(StrEnum):
    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"


MAX_ACTIONS = 5


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
    entity: Entity
    id: Id
    title: RecordTitle | None = None


class Action(_Strict):
    """One decision a person can make from the card (it completes the task with
    ``outcome`` = ``id``); ``comment`` says whether a comment is asked for."""

    id: Id
    label: Text
    comment: CommentRule = CommentRule.NONE


def _unique_actions(actions: list[Action] | None) -> list[Action] | None:
    if actions is not None and len({a.id for a in actions}) != len(actions):
        raise PydanticCustomError("duplicate_action", "action ids must be unique")
    return actions


Actions = Annotated[
    list[Action], Field(min_length=1, max_length=MAX_ACTIONS), AfterValidator(_unique_actions)
]


class TaskCreate(_Strict):
    """Body of ``POST /tasks``."""

    id: Id
    owner: Owner | None = None
    role: Id | None = None  # a role id, as in /roles/{role} (no "/": the path could not name it)
    title: Title
    kind: Kind = Kind.ACTIVITY
    process: ProcessRef | None = None
    record: RecordRef | None = None
    url: Url | None = None
    postponed_until: Instant | None = None
    due_at: Instant | None = None
    priority: Priority = Priority.NORMAL
    actions: Actions | None = None
    follows: Id | None = None  # the step of the same instance this one comes after

    @model_validator(mode="after")
    def _one_audience(self) -> TaskCreate:
        if (self.owner is None) == (self.role is None):
            raise PydanticCustomError(
                "one_audience", "give exactly one of 'owner' (a person) and 'role' (a queue)"
            )
        return self


class TaskPatch(_Strict):
    """Body of ``PATCH /tasks/{id}``: any subset of these fields."""

    title: Title | None = None
    url: Url | None = None
    record: RecordRef | None = None
    owner: Owner | None = None
    role: Id | None = None
    postponed_until: Instant | None = None
    due_at: Instant | None = None
    priority: Priority | None = None
    actions: Actions | None = None


class Postpone(_Strict):
    until: Instant


class Complete(_Strict):
    """Optional body of ``POST /tasks/{id}/complete``: the decision taken (one of the
    task's ``actions``) and a comment."""

    outcome: Id | None = None
    comment: Annotated[str, StringConstraints(max_length=4000), AfterValidator(no_nul)] | None = (
        None
    )


class Claim(_Strict):
    """Body of ``POST /tasks/{id}/claim``: a producer names who claims; a person sends none."""

    user: Owner | None = None


class Members(_Strict):
    """Body of ``PUT /roles/{role}/members``."""

    members: Annotated[list[Owner], Field(max_length=10_000)]


class SubstitutionCreate(_Strict):
    """Body of ``POST /substitutions``."""

    id: Id
    user: Owner
    substitute: Owner
    starts_at: Instant
    ends_at: Instant

    @model_validator(mode="after")
    def _ordered(self) -> SubstitutionCreate:
        if self.ends_at <= self.starts_at:
            raise PydanticCustomError("bad_period", "'ends_at' must be after 'starts_at'")
        if self.user == self.substitute:
            raise PydanticCustomError("self_substitute", "a person cannot stand in for themselves")
        return self


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
    outcome: Id | None = None  # complete only
    comment: Annotated[str, StringConstraints(max_length=4000)] | None = None  # complete only


class PostponeOp(_Strict):
    op: Literal["postpone"]
    id: Id
    until: Instant


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


class ActionJSON(TypedDict):
    id: str
    label: str
    comment: str


class TaskJSON(TypedDict):
    id: str
    owner: str | None
    role: str | None
    acted_by: str | None
    title: str
    kind: str
    status: str
    process: ProcessJSON | None
    record: RecordJSON | None
    url: str | None
    postponed_until: str | None
    created_at: str
    updated_at: str
    due_at: str | None
    priority: str
    overdue: bool
    actions: list[ActionJSON] | None
    outcome: str | None
    comment: str | None
    completed_by: str | None
    follows: str | None


class CountsJSON(TypedDict):
    """A feed's counts at one seq: ``running`` (the same number as ``count``) and
    ``postponed``. Every message that carries a ``count`` carries these beside it."""

    running: int
    postponed: int


class EventMessage(TypedDict):
    type: str
    feed: str
    seq: int
    count: int
    counts: CountsJSON
    task: TaskJSON
    reason: str | None


class FeedPosJSON(TypedDict):
    seq: int
    count: int
    counts: CountsJSON


class SnapshotMessage(TypedDict):
    """The view of every followed feed at once. Top-level ``seq`` and ``count`` are the
    own feed's; ``feeds`` has each followed feed's (own first); ``tasks`` are the running
    tasks of all of them."""

    type: Literal["snapshot"]
    seq: int
    count: int
    counts: CountsJSON
    feeds: dict[str, FeedPosJSON]
    tasks: list[TaskJSON]


class SyncedMessage(TypedDict):
    """After a replay of every followed feed: where each now stands (own at top level)."""

    type: Literal["synced"]
    seq: int
    count: int
    counts: CountsJSON
    feeds: dict[str, FeedPosJSON]


class FeedJoinedMessage(TypedDict):
    """The connection now follows ``feed`` too: its running tasks at ``seq``; live
    events of that feed with a higher seq follow."""

    type: Literal["feed.joined"]
    feed: str
    seq: int
    count: int
    counts: CountsJSON
    tasks: list[TaskJSON]


class FeedLeftMessage(TypedDict):
    """The connection no longer follows ``feed``: no event of it comes after this."""

    type: Literal["feed.left"]
    feed: str


class HeartbeatMessage(TypedDict):
    """The server's ping: where each followed feed stands for this connection (the seq
    it was last given and the count that went with it), so a client whose own state
    differs resynchronises by itself."""

    type: Literal["ping"]
    feeds: dict[str, FeedPosJSON]


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def iso(dt: datetime | None) -> str | None:
    """UTC ISO-8601 with a Z, or None. An aware time is converted to UTC first; a naive
    one is taken to be UTC already (that is how the database hands stored times back)."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC).replace(tzinfo=None)
    # (isoformat, not strftime: faster, and it pads a year before 1000 to four digits)
    return dt.isoformat(timespec="microseconds") + "Z"


# ---------------------------------------------------------------- parsing JSON once


class DuplicateKey(ValueError):
    """A JSON object names the same key twice (which one wins differs between parsers,
    so ``{"type": "ping", "type": "auth"}`` would mean different things to different
    readers). Raised by ``loads``."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key[:40]!r} in a JSON object")
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def loads(raw: bytes | str) -> Any:
    """``orjson.loads``, but a JSON object with a key written twice raises
    ``DuplicateKey`` instead of keeping the last one.

    orjson reads (and validates) every document. A key written twice is a key-value pair
    the parsed value lacks, and every pair is one colon outside the strings; a colon
    inside a string comes through parsing unchanged unless it was written as a ``\\u``
    escape. So when the document has no ``\\u`` escape, its colons and those of the
    parsed value written out again by orjson (compact, in C) are as many exactly when
    no key was repeated: one parse and one write instead of a second parse in Python
    (``{"type": "ping"}``, with one colon, needs neither). Only a document that fails
    that test (a repeated key, a ``\\u`` escape, nesting too deep to write out) is read
    once more by the standard library with a hook that names the repeated key."""
    data = orjson.loads(raw)
    if isinstance(data, dict | list):
        colons = raw.count(b":") if isinstance(raw, bytes) else raw.count(":")
        if colons > 1 and not _as_many_colons(data, raw, colons):
            try:
                json.loads(raw, object_pairs_hook=_refuse_duplicates)
            except RecursionError:
                raise orjson.JSONDecodeError("the document is nested too deeply", "", 0) from None
    return data


def _as_many_colons(data: object, raw: bytes | str, colons: int) -> bool:
    """True when ``data`` (parsed from ``raw``, which has ``colons`` colons) provably
    kept every key-value pair of ``raw``; False when that takes a closer look."""
    if (b"\\u" in raw) if isinstance(raw, bytes) else ("\\u" in raw):
        return False
    try:
        return orjson.dumps(data).count(b":") == colons
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return False


def parse_body(raw: bytes, model: type[_M]) -> _M:
    """Parse a JSON request body into ``model``.

    Raises ``BadRequest`` for bytes that are not JSON (``malformed_json``) or that repeat
    a key in one object (``duplicate_key``), and ``Unprocessable`` for JSON of the wrong
    shape (with pydantic's field errors, minus the offending input values) or text
    holding NUL characters.
    """
    try:
        data = loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc.msg}", code="malformed_json") from None
    except DuplicateKey as exc:
        raise BadRequest(f"the body repeats a key: {exc}", code="duplicate_key") from None
    if data is None:
        raise BadRequest("a JSON body is required", code="malformed_json")
    if b"\\u0000" in raw and _has_nul(data):
        raise Unprocessable("text in the body must not contain NUL characters", code="invalid")
    return validate(data, model)


def validate(data: object, model: type[_M]) -> _M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        # When every error is of one kind with a code of its own (bad_time), answer with
        # that code; anything else is ``invalid``.
        kinds = {e["type"] for e in errors}
        code = kinds.pop() if len(kinds) == 1 and kinds <= _OWN_CODES else "invalid"
        message = "a time in the body is not usable" if code == "bad_time" else None
        raise Unprocessable(
            message or "the body does not have the expected shape", code=code, errors=errors
        ) from None


# ---------------------------------------------------------------- client → server (WebSocket)


SEQ_MAX = 2**63 - 1  # the largest seq a client may name
MAX_SINCE_FEEDS = 100  # feeds one auth message may resume


def _feed_name(value: str) -> str:
    if not is_feed(value):
        raise PydanticCustomError("bad_feed", "not a feed name (user:<id> or role:<id>)")
    return value


FeedName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=205, pattern=r"^[^\s/]+$"),
    AfterValidator(_feed_name),
]
Seq = Annotated[int, Field(ge=0, le=SEQ_MAX, strict=True)]
SinceFeeds = Annotated[dict[FeedName, Seq], Field(max_length=MAX_SINCE_FEEDS)]
_SINCE_FEEDS: TypeAdapter[dict[str, int]] = TypeAdapter(SinceFeeds)


def parse_since_feeds(value: object) -> dict[str, int]:
    """``since_feeds`` given outside an auth message (the event stream's resume): a
    dict of feed names to seqs, as ``AuthMessage`` takes it. Raises ``ValueError``
    (pydantic's ``ValidationError``) saying what is wrong."""
    return _SINCE_FEEDS.validate_python(value)


class AuthMessage(_Strict):
    """``since``: the own feed's last seq seen; ``since_feeds``: other followed feeds'
    (a feed named there that the user does not follow is ignored)."""

    type: Literal["auth"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    since: Annotated[int, Field(ge=0)] | None = None
    since_feeds: SinceFeeds | None = None


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
        data = loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolViolation(CloseCode.BAD_MESSAGE, "message is not valid JSON") from None
    except DuplicateKey as exc:
        raise ProtocolViolation(CloseCode.BAD_MESSAGE, str(exc)[:120]) from None
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
