"""The OpenAPI 3.1 document of the HTTP API (``GET /api/v1/openapi.json``), generated.

``OPERATIONS`` declares each route once: who may call it, its query and path
parameters, the pydantic model that validates its body (the very class the endpoint
hands to ``parse_body``) and the TypedDict it answers with. ``document()`` turns them
into schemas with pydantic (``TypeAdapter.json_schemas``: request models in validation
mode, answers in serialization mode), so a field added to a model is in the document
with nothing more to write. ``tests/test_openapi.py`` validates the document and checks
that every route of the app is in it, with its methods.
"""

from __future__ import annotations

import functools
import operator
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import typing_extensions
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from server.api.demo import ProcessRequest, TokenRequest
from server.api.processes import InstanceCreate, InstancePatch, ProcessEnd
from server.audiences import RoleJSON, SubstitutionJSON
from server.delivery.wire import (
    DeliveryJSON,
    EndpointCreate,
    EndpointCreatedJSON,
    EndpointJSON,
    EndpointPatch,
    PushSubscriptionBody,
    SubscriptionJSON,
)
from server.instances import InstanceDetailJSON, InstancePageJSON
from server.preferences import Preferences
from server.processes import InstanceJSON
from server.reads import ChangeJSON, DefinitionJSON
from server.seen import NewJSON, SeenRequest
from server.stats import OverallJSON, ProcessStatsJSON
from server.wire import (
    Batch,
    Claim,
    Complete,
    CountsJSON,
    FeedPosJSON,
    Members,
    Postpone,
    SubstitutionCreate,
    TaskCreate,
    TaskJSON,
    TaskPatch,
)

VERSION = "0.1.0"

# ``admin``: a producer, or a person whose token carries the ``process-admin`` role.
Auth = Literal["producer", "user", "either", "admin", "metrics", "none"]

# ---------------------------------------------------------------- answers without a class


class ErrorDetail(TypedDict, total=False):
    code: str
    message: str
    details: list[dict[str, Any]]


class ErrorJSON(TypedDict):
    """Every error: ``{"error": {"code", "message"}}`` (``details``: field errors)."""

    error: ErrorDetail


class TaskListJSON(TypedDict):
    tasks: list[TaskJSON]
    next_cursor: str | None


class CounterJSON(TypedDict):
    count: int
    counts: CountsJSON
    seq: int
    total: int
    feeds: dict[str, FeedPosJSON]


class HistoryJSON(TypedDict):
    id: str
    changes: list[ChangeJSON]


class SubstitutionListJSON(TypedDict):
    substitutions: list[SubstitutionJSON]


class StatusCountsJSON(TypedDict):
    running: int
    postponed: int
    completed: int
    canceled: int


class SeenJSON(TypedDict):
    feeds: dict[str, int]
    new: list[NewJSON]


class MarkedJSON(TypedDict):
    feeds: dict[str, int]
    ignored: list[str]


class RecordTasksJSON(TypedDict):
    entity: str
    id: str
    tasks: list[TaskJSON]


class BatchOkJSON(TypedDict):
    status: int
    task: TaskJSON


class BatchErrorJSON(TypedDict):
    status: int
    error: ErrorDetail


class BatchResultsJSON(TypedDict):
    """One result per op, in order: the task, or the op's own error and status."""

    results: list[BatchOkJSON | BatchErrorJSON]


class InstanceEndedJSON(InstanceJSON):
    canceled_steps: int
    canceled: int


class StatsJSON(TypedDict):
    processes: list[ProcessStatsJSON]
    overall: OverallJSON


class DefinitionsJSON(TypedDict):
    processes: list[DefinitionJSON]


class DefinitionSwitchJSON(TypedDict):
    name: str
    disabled: bool


class RevokedJSON(TypedDict):
    user: str
    revoked_at: str


class EndpointListJSON(TypedDict):
    endpoints: list[EndpointJSON]


class DeliveryListJSON(TypedDict):
    deliveries: list[DeliveryJSON]
    next_cursor: str | None


class PushConfigJSON(TypedDict):
    enabled: bool
    public_key: str | None


class SubscriptionListJSON(TypedDict):
    subscriptions: list[SubscriptionJSON]


class HealthJSON(TypedDict):
    status: str


class ReadyJSON(TypedDict):
    status: str
    checks: dict[str, str]
    broker: str
    connections: int


class DemoInfoJSON(TypedDict):
    demo: bool
    users: list[str]
    engine: bool


class DemoTokenJSON(TypedDict):
    user: str
    token: str


class DemoProcessJSON(TypedDict):
    instance_id: str
    tasks: list[str]
    process: typing_extensions.NotRequired[str]  # with the engine: the BPMN process started


# ---------------------------------------------------------------- the registry

Schema = type[BaseModel] | Any  # a pydantic model or a TypedDict


@dataclass(frozen=True)
class Answer:
    description: str
    schema: Schema | None = None  # JSON
    media: str | None = None  # something else (text/html, text/event-stream, ...)
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    enum: tuple[str, ...] = ()
    kind: Literal["string", "integer"] = "string"


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    summary: str
    tag: str
    auth: Auth
    ok: dict[int, Answer]
    body: type[BaseModel] | None = None
    body_optional: bool = False
    query: tuple[Query, ...] = ()
    errors: tuple[int, ...] = ()
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


TASK = Answer("The task", TaskJSON)
TASK_OR_NEW = {201: Answer("Created", TaskJSON), 200: Answer("Unchanged or changed", TaskJSON)}
NO_BODY = "Takes no body (or `{}`)."
LIMIT = Query("limit", "Page size, 1 to 200 (default 50)", kind="integer")
CURSOR = Query("cursor", "The `next_cursor` of the previous page")
ADMIN = (
    'A producer, or a person whose user token carries `roles: ["process-admin"]` (in '
    "the token's tenant); any other person gets 403 `process_admin_required`."
)

_ENDINGS: tuple[tuple[str, str, Auth], ...] = (
    ("complete", "Complete an instance", "producer"),
    ("fail", "End an instance in error", "producer"),
    ("cancel", "Cancel an instance and its open tasks", "admin"),
)

OPERATIONS: tuple[Op, ...] = (
    # ------------------------------------------------------------ tasks (producer)
    Op(
        "POST",
        "/api/v1/tasks",
        "Create a task (or repeat a create idempotently)",
        "tasks",
        "producer",
        TASK_OR_NEW,
        TaskCreate,
        errors=(409, 422),
        description="201 for a new task, 200 for an identical repeat, 409 for a different "
        "body with the same id.",
    ),
    Op(
        "POST",
        "/api/v1/tasks/batch",
        "Many task changes in one request and one transaction",
        "tasks",
        "producer",
        {200: Answer("One result per op, in order", BatchResultsJSON)},
        Batch,
        errors=(422,),
    ),
    Op("GET", "/api/v1/tasks/{task_id}", "One task", "tasks", "producer", {200: TASK}),
    Op(
        "PATCH",
        "/api/v1/tasks/{task_id}",
        "Change title, url, record, owner or postponement",
        "tasks",
        "producer",
        {200: TASK},
        TaskPatch,
        errors=(409, 422),
    ),
    Op(
        "POST",
        "/api/v1/tasks/{task_id}/complete",
        "Complete a task (with the decision taken, for a task with actions)",
        "tasks",
        "either",
        {200: TASK},
        Complete,
        body_optional=True,
        errors=(409, 422),
        description="A task with `actions`: a person must give an `outcome` (one of the "
        "actions' ids; a producer may omit it), and an action whose `comment` is "
        "`required` needs a comment that is not blank. The completed task carries "
        "`outcome`, `comment` and `completed_by`.",
    ),
    Op(
        "POST",
        "/api/v1/tasks/{task_id}/cancel",
        "Cancel a task",
        "tasks",
        "either",
        {200: TASK},
        errors=(409, 422),
        description=NO_BODY,
    ),
    Op(
        "POST",
        "/api/v1/tasks/{task_id}/resume",
        "Bring a postponed task back now",
        "tasks",
        "either",
        {200: TASK},
        errors=(409, 422),
        description=NO_BODY,
    ),
    Op(
        "POST",
        "/api/v1/tasks/{task_id}/postpone",
        "Hide a task until a time; it comes back by itself",
        "tasks",
        "either",
        {200: TASK},
        Postpone,
        errors=(409, 422),
    ),
    Op(
        "POST",
        "/api/v1/tasks/{task_id}/claim",
        "Take a task offered to a role",
        "roles",
        "either",
        {200: TASK},
        Claim,
        body_optional=True,
        errors=(409, 422),
        description="A member claims for themselves (no body); a producer names the user: "
        '`{"user": "alice"}`. The winner of concurrent claims gets 200, every other 409 '
        "`already_claimed`; a person outside the role gets 404.",
    ),
    Op(
        "GET",
        "/api/v1/tasks/{task_id}/history",
        "Every change of a task, with who made it",
        "tasks",
        "either",
        {200: Answer("The changes, oldest first", HistoryJSON)},
        description="`acting_as`: `producer`, `clock`, `owner`, `member` (of the task's "
        "queue), `claimer` or `substitute`. A person sees the history of a task in a feed "
        "they follow.",
    ),
    Op(
        "POST",
        "/api/v1/tasks/{task_id}/unclaim",
        "Put a claimed task back into its role's queue",
        "roles",
        "either",
        {200: TASK},
        errors=(409,),
        description=NO_BODY,
    ),
    Op(
        "PUT",
        "/api/v1/roles/{role}/members",
        "Set a role's members (creating the role)",
        "roles",
        "producer",
        {200: Answer("The role", RoleJSON)},
        Members,
        errors=(422,),
        description="Open sockets of people added or removed follow within about a second "
        "(`feed.joined` / `feed.left`).",
    ),
    Op(
        "GET",
        "/api/v1/roles/{role}",
        "A role and its members",
        "roles",
        "producer",
        {200: Answer("The role", RoleJSON)},
    ),
    Op(
        "POST",
        "/api/v1/substitutions",
        "Let someone stand in for a person for a period",
        "substitutes",
        "producer",
        {
            201: Answer("Created", SubstitutionJSON),
            200: Answer("An identical repeat", SubstitutionJSON),
        },
        SubstitutionCreate,
        errors=(409, 422),
    ),
    Op(
        "GET",
        "/api/v1/substitutions",
        "Substitutions not yet ended",
        "substitutes",
        "producer",
        {200: Answer("The substitutions", SubstitutionListJSON)},
        query=(Query("user", "Only those where this person is absent or stands in"),),
        errors=(400,),
    ),
    Op(
        "DELETE",
        "/api/v1/substitutions/{substitution_id}",
        "Delete a substitution (one in force ends at once)",
        "substitutes",
        "producer",
        {200: Answer("The substitution, deleted", SubstitutionJSON)},
    ),
    Op(
        "GET",
        "/api/v1/tasks/{task_id}/open",
        "Redirect to the page for a task",
        "tasks",
        "either",
        {
            303: Answer(
                "To the task's page, or its record's once it is final", headers=("Location",)
            )
        },
        query=(Query("token", "A user token, for links a browser follows (no header)"),),
        description="The owner (user token, in the header or `?token=`) or a producer.",
    ),
    # ------------------------------------------------------------ people
    Op(
        "GET",
        "/api/v1/me/tasks",
        "The caller's tasks, newest change first",
        "people",
        "user",
        {200: Answer("A page of tasks", TaskListJSON)},
        query=(
            Query("status", "`running` (default), a comma-separated list, or `all`"),
            LIMIT,
            CURSOR,
            Query("q", "Search title, process name and record (at most 200 characters)"),
            Query("sort", "Order of the list", enum=("newest", "due", "priority")),
        ),
        errors=(400,),
    ),
    Op(
        "GET",
        "/api/v1/me/counter",
        "The badge: running tasks and the feed's seq",
        "people",
        "user",
        {200: Answer("The counter", CounterJSON)},
    ),
    Op(
        "GET",
        "/api/v1/me/counts",
        "How many of the caller's tasks are in each status",
        "people",
        "user",
        {200: Answer("Totals by status", StatusCountsJSON)},
        query=(Query("q", "Count only the tasks this search finds (as in /me/tasks)"),),
        errors=(400,),
    ),
    Op(
        "GET",
        "/api/v1/me/seen",
        "How far the caller has seen each feed, and the tasks new since",
        "people",
        "user",
        {200: Answer("Marks and new tasks", SeenJSON)},
    ),
    Op(
        "PUT",
        "/api/v1/me/seen",
        "Mark feeds seen up to a seq (never backwards)",
        "people",
        "user",
        {200: Answer("The marks now", MarkedJSON)},
        SeenRequest,
        errors=(400, 413, 422),
        description="Feeds the caller does not follow are ignored and listed in `ignored`; "
        "a seq past a feed's head counts as the head. The caller's sockets get a `seen` "
        "message.",
    ),
    Op(
        "GET",
        "/api/v1/records/{entity}/{record_id}/tasks",
        "The caller's open tasks connected to a record",
        "people",
        "user",
        {200: Answer("The record's open tasks", RecordTasksJSON)},
    ),
    Op(
        "POST",
        "/api/v1/users/{user}/revoke",
        "Refuse a person's tokens issued up to now and close their sockets",
        "people",
        "producer",
        {200: Answer("When", RevokedJSON)},
    ),
    # ------------------------------------------------------------ notification preferences
    Op(
        "GET",
        "/api/v1/me/preferences",
        "The caller's notification preferences (the defaults if never set)",
        "preferences",
        "user",
        {200: Answer("The preferences", Preferences)},
    ),
    Op(
        "PUT",
        "/api/v1/me/preferences",
        "Replace the caller's notification preferences",
        "preferences",
        "user",
        {200: Answer("What is now stored", Preferences)},
        Preferences,
        errors=(422,),
        description="Channels that may interrupt (desktop bridge, Web Push), muted process "
        "names (at most 100) and quiet hours (`HH:MM` to `HH:MM` in an IANA time zone; "
        "urgent tasks still interrupt). A field left out takes its default. 422 "
        "`bad_time`, `bad_time_zone` or `invalid`.",
    ),
    Op(
        "GET",
        "/api/v1/users/{user}/preferences",
        "A person's notification preferences",
        "preferences",
        "producer",
        {200: Answer("The preferences", Preferences)},
    ),
    Op(
        "PUT",
        "/api/v1/users/{user}/preferences",
        "Replace a person's notification preferences",
        "preferences",
        "producer",
        {200: Answer("What is now stored", Preferences)},
        Preferences,
        errors=(422,),
    ),
    Op(
        "GET",
        "/events",
        "The caller's feed as Server-Sent Events",
        "people",
        "user",
        {200: Answer("An event stream", media="text/event-stream")},
        query=(
            Query("since", "Resume after this seq (or send Last-Event-ID)", kind="integer"),
            Query("token", "A user token, for EventSource (which cannot set headers)"),
        ),
        errors=(400, 429),
    ),
    Op(
        "GET",
        "/api/v1/events",
        "The caller's feed as Server-Sent Events (same as /events)",
        "people",
        "user",
        {200: Answer("An event stream", media="text/event-stream")},
        query=(
            Query("since", "Resume after this seq (or send Last-Event-ID)", kind="integer"),
            Query("token", "A user token, for EventSource (which cannot set headers)"),
        ),
        errors=(400, 429),
    ),
    # ------------------------------------------------------------ processes
    Op(
        "POST",
        "/api/v1/processes",
        "Start a process instance (idempotent)",
        "processes",
        "producer",
        {201: Answer("Started", InstanceJSON), 200: Answer("Already there", InstanceJSON)},
        InstanceCreate,
        errors=(409, 422),
    ),
    Op(
        "GET",
        "/api/v1/processes/stats",
        "Instances by status and durations, per process and overall",
        "processes",
        "admin",
        {200: Answer("Statistics", StatsJSON)},
        query=(
            Query("name", "Only this process"),
            Query("from", "Started at or after (ISO-8601 with a zone)"),
            Query("to", "Started before (ISO-8601 with a zone)"),
        ),
        errors=(400,),
        description="Durations count completed instances only. " + ADMIN,
    ),
    Op(
        "GET",
        "/api/v1/processes",
        "A page of process instances, newest start first",
        "processes",
        "admin",
        {200: Answer("Instances and the next page's cursor", InstancePageJSON)},
        query=(
            Query(
                "status",
                "`all` (default) or a comma-separated list of running, completed, canceled, error",
            ),
            Query("definition", "Only instances of this process"),
            Query("from", "Started at or after (ISO-8601 with a zone)"),
            Query("to", "Started before (ISO-8601 with a zone)"),
            LIMIT,
            CURSOR,
        ),
        errors=(400,),
        description="Unknown or repeated query parameters are 400 `bad_query`, a cursor "
        "not handed out by this server 400 `bad_cursor`. " + ADMIN,
    ),
    Op(
        "GET",
        "/api/v1/processes/{instance_id}",
        "An instance with its steps (owners, times, durations)",
        "processes",
        "admin",
        {200: Answer("The instance", InstanceDetailJSON)},
        description=ADMIN,
    ),
    Op(
        "PATCH",
        "/api/v1/processes/{instance_id}",
        "Say whether more steps are coming",
        "processes",
        "producer",
        {200: Answer("The instance", InstanceJSON)},
        InstancePatch,
        errors=(409, 422),
    ),
    *(
        Op(
            "POST",
            f"/api/v1/processes/{{instance_id}}/{verb}",
            summary,
            "processes",
            auth,
            {200: Answer("The ended instance", InstanceEndedJSON)},
            ProcessEnd,
            body_optional=True,
            errors=(409, 422),
            description="Cancels the instance's open steps."
            + (f" {ADMIN}" if auth == "admin" else ""),
        )
        for verb, summary, auth in _ENDINGS
    ),
    Op(
        "GET",
        "/api/v1/process-definitions",
        "Every process name seen, with its switch",
        "processes",
        "admin",
        {200: Answer("The definitions", DefinitionsJSON)},
        description=ADMIN,
    ),
    *(
        Op(
            "POST",
            f"/api/v1/process-definitions/{{name}}/{verb}",
            f"{verb.capitalize()} a process: new instances are {word}",
            "processes",
            "admin",
            {200: Answer("The switch", DefinitionSwitchJSON)},
            description=ADMIN,
        )
        for verb, word in (("disable", "refused"), ("enable", "accepted"))
    ),
    # ------------------------------------------------------------ webhooks
    Op(
        "POST",
        "/api/v1/webhooks",
        "Add a webhook endpoint (the answer holds its signing secret, once)",
        "webhooks",
        "producer",
        {201: Answer("The endpoint and its secret", EndpointCreatedJSON)},
        EndpointCreate,
        errors=(422,),
    ),
    Op(
        "GET",
        "/api/v1/webhooks",
        "Every webhook endpoint",
        "webhooks",
        "producer",
        {200: Answer("The endpoints", EndpointListJSON)},
    ),
    Op(
        "GET",
        "/api/v1/webhooks/{endpoint_id}",
        "One webhook endpoint",
        "webhooks",
        "producer",
        {200: Answer("The endpoint", EndpointJSON)},
    ),
    Op(
        "PATCH",
        "/api/v1/webhooks/{endpoint_id}",
        "Change an endpoint (`enabled: true` re-enables it)",
        "webhooks",
        "producer",
        {200: Answer("The endpoint", EndpointJSON)},
        EndpointPatch,
        errors=(422,),
    ),
    Op(
        "DELETE",
        "/api/v1/webhooks/{endpoint_id}",
        "Remove an endpoint",
        "webhooks",
        "producer",
        {204: Answer("Removed")},
    ),
    Op(
        "GET",
        "/api/v1/webhooks/{endpoint_id}/deliveries",
        "The endpoint's delivery log, newest first",
        "webhooks",
        "producer",
        {200: Answer("A page of deliveries", DeliveryListJSON)},
        query=(
            Query("status", "Only these", enum=("pending", "delivered", "failed", "paused")),
            LIMIT,
            CURSOR,
        ),
        errors=(400,),
    ),
    Op(
        "GET",
        "/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}",
        "One delivery",
        "webhooks",
        "producer",
        {200: Answer("The delivery", DeliveryJSON)},
    ),
    Op(
        "POST",
        "/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver",
        "Send a delivery again (same webhook-id), at once",
        "webhooks",
        "producer",
        {202: Answer("The delivery, due now", DeliveryJSON)},
    ),
    # ------------------------------------------------------------ Web Push
    Op(
        "GET",
        "/api/v1/push/config",
        "Whether Web Push is on, and the VAPID public key",
        "push",
        "none",
        {200: Answer("The configuration", PushConfigJSON)},
    ),
    Op(
        "POST",
        "/api/v1/me/push-subscriptions",
        "Subscribe a browser (PushSubscription.toJSON())",
        "push",
        "user",
        {201: Answer("Added", SubscriptionJSON), 200: Answer("Known", SubscriptionJSON)},
        PushSubscriptionBody,
        errors=(422, 503),
    ),
    Op(
        "GET",
        "/api/v1/me/push-subscriptions",
        "The caller's push subscriptions",
        "push",
        "user",
        {200: Answer("The subscriptions", SubscriptionListJSON)},
    ),
    Op(
        "DELETE",
        "/api/v1/me/push-subscriptions/{subscription_id}",
        "Remove a push subscription",
        "push",
        "user",
        {204: Answer("Removed")},
    ),
    # ------------------------------------------------------------ demo mode
    Op(
        "GET",
        "/api/v1/demo",
        "Whether demo mode runs, and its people",
        "demo",
        "none",
        {200: Answer("Demo mode", DemoInfoJSON)},
    ),
    Op(
        "POST",
        "/api/v1/demo/token",
        "Demo mode only: a token for a person",
        "demo",
        "none",
        {200: Answer("A token", DemoTokenJSON)},
        TokenRequest,
        errors=(422,),
    ),
    Op(
        "POST",
        "/api/v1/demo/process",
        "Demo mode only: start a sample process",
        "demo",
        "none",
        {202: Answer("Started; its tasks arrive one by one", DemoProcessJSON)},
        ProcessRequest,
        body_optional=True,
        errors=(422, 502, 503),
        description="With `TASKBELL_ENGINE_URL` set, starts a real BPMN instance on the "
        "engine (`process`, default `invoice_approval`, and its `data`): 503 "
        "`engine_unavailable` when the engine cannot be reached, 502 `engine_refused` "
        "when it refuses. Without it, a made-up process creates its steps one by one.",
    ),
    Op(
        "GET",
        "/demo/task/{task_id}",
        "Demo mode only: the page a demo task opens",
        "demo",
        "none",
        {200: Answer("A page in the browser's language (Accept-Language)", media="text/html")},
    ),
    # ------------------------------------------------------------ operations and pages
    Op(
        "GET",
        "/healthz",
        "200 while the process lives",
        "operations",
        "none",
        {200: Answer("Alive", HealthJSON)},
    ),
    Op(
        "GET",
        "/readyz",
        "200 while the database and the broker are reachable",
        "operations",
        "none",
        {200: Answer("Ready", ReadyJSON), 503: Answer("Not ready, and why", ReadyJSON)},
    ),
    Op(
        "GET",
        "/metrics",
        "This instance's figures, Prometheus text format",
        "operations",
        "metrics",
        {200: Answer("Prometheus exposition", media="text/plain")},
        description="Open without `TASKBELL_METRICS_TOKEN`; with it, that token or a "
        "producer key as a bearer.",
    ),
    Op(
        "GET",
        "/api/v1/openapi.json",
        "This document",
        "operations",
        "none",
        {200: Answer("OpenAPI 3.1", media="application/json")},
    ),
    Op(
        "GET",
        "/api",
        "The API reference page (made from this document)",
        "operations",
        "none",
        {200: Answer("A page", media="text/html")},
    ),
    Op(
        "GET",
        "/",
        "The communication panel (token in the URL fragment)",
        "pages",
        "none",
        {200: Answer("The panel", media="text/html")},
    ),
    Op(
        "GET",
        "/favicon.ico",
        "The bell icon",
        "pages",
        "none",
        {200: Answer("An SVG", media="image/svg+xml")},
    ),
    Op(
        "GET",
        "/sw.js",
        "The service worker that shows Web Push notifications",
        "pages",
        "none",
        {200: Answer("JavaScript", media="text/javascript")},
    ),
    Op(
        "GET",
        "/embed.js",
        "The embeddable bell (`<taskbell-bell token>`), for host pages of any origin",
        "pages",
        "none",
        {200: Answer("JavaScript", media="text/javascript")},
    ),
)

_ERROR_TEXT = {
    400: "Bad request (not JSON, a repeated key, a bad query)",
    401: "No valid credentials",
    403: "Not allowed: a right the token lacks (process-admin), or a browser origin",
    404: "Not found (or not the caller's)",
    409: "Conflicts with the current state",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Body of the wrong shape (details: field errors)",
    429: "Too many requests (Retry-After)",
    502: "A service behind this one refused (demo: the engine)",
    503: "Database (or, in demo mode, the engine) unavailable (Retry-After)",
}
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "producer": [{"producerKey": []}],
    "user": [{"userToken": []}],
    "either": [{"producerKey": []}, {"userToken": []}],
    "admin": [{"producerKey": []}, {"userToken": []}],
    "metrics": [{}, {"metricsToken": []}, {"producerKey": []}],
    "none": [],
}
_PARAM = re.compile(r"{(\w+)}")


@functools.cache
def _portable(kind: Any) -> Any:
    """``kind`` with every ``typing.TypedDict`` in it made a ``typing_extensions`` one,
    which is what pydantic reads on Python < 3.12 (same name, fields, docs and
    required keys)."""
    if typing.is_typeddict(kind):
        hints = typing.get_type_hints(kind)
        required = kind.__required_keys__
        fields = {
            name: _portable(hint)
            if name in required
            else typing_extensions.NotRequired[_portable(hint)]
            for name, hint in hints.items()
        }
        make: Any = typing_extensions.TypedDict
        made = make(kind.__name__, fields)
        made.__doc__ = kind.__doc__
        return made
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is None or origin is Literal or not args:
        return kind
    converted = tuple(_portable(a) for a in args)
    if origin in (types.UnionType, typing.Union):
        return functools.reduce(operator.or_, converted)
    return origin[converted]


def _schemas() -> tuple[dict[tuple[str, JsonSchemaMode], dict[str, Any]], dict[str, Any]]:
    """Every body and answer schema, and the shared definitions they refer to."""
    wanted: dict[tuple[str, JsonSchemaMode], Any] = {("ErrorJSON", "serialization"): ErrorJSON}
    for op in OPERATIONS:
        if op.body is not None:
            wanted[(op.body.__name__, "validation")] = op.body
        for answer in op.ok.values():
            if answer.schema is not None:
                wanted[(answer.schema.__name__, "serialization")] = answer.schema
    inputs = [(name, mode, TypeAdapter(_portable(kind))) for (name, mode), kind in wanted.items()]
    refs, defs = TypeAdapter.json_schemas(inputs, ref_template="#/components/schemas/{model}")
    return refs, defs.get("$defs", {})


def _name(schema: Any) -> str:
    return str(schema.__name__)


def _operation(op: Op, refs: dict[tuple[str, JsonSchemaMode], dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', op.path.lower())}".rstrip(
            "_"
        ),
        "summary": op.summary,
        "tags": [op.tag],
    }
    if op.description:
        out["description"] = op.description
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(op.path)
    ]
    for q in op.query:
        schema: dict[str, Any] = {"type": q.kind}
        if q.enum:
            schema["enum"] = list(q.enum)
        params.append(
            {"name": q.name, "in": "query", "description": q.description, "schema": schema}
        )
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": refs[(op.body.__name__, "validation")]}},
        }
    responses: dict[str, Any] = {}
    for status, answer in op.ok.items():
        entry: dict[str, Any] = {"description": answer.description}
        if answer.schema is not None:
            schema_ref = refs[(_name(answer.schema), "serialization")]
            entry["content"] = {"application/json": {"schema": schema_ref}}
        elif answer.media is not None:
            entry["content"] = {answer.media: {"schema": {"type": "string"}}}
        if answer.headers:
            entry["headers"] = {h: {"schema": {"type": "string"}} for h in answer.headers}
        responses[str(status)] = entry
    errors = set(op.errors) | {429, 503}
    if op.auth in ("producer", "user", "either", "admin", "metrics"):
        errors.add(401)
    if op.auth == "admin":
        errors.add(403)
    if _PARAM.search(op.path):
        errors.add(404)
    if op.body is not None:
        errors |= {400, 413, 415, 422}
    for status in sorted(errors):
        responses.setdefault(str(status), {"$ref": f"#/components/responses/E{status}"})
    out["responses"] = responses
    security = _SECURITY[op.auth]
    out["security"] = security
    return out


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once per process)."""
    refs, defs = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    error_ref = refs[("ErrorJSON", "serialization")]
    responses = {
        f"E{status}": {
            "description": text,
            "content": {"application/json": {"schema": error_ref}},
        }
        for status, text in _ERROR_TEXT.items()
    }
    for status in (429, 503):
        responses[f"E{status}"]["headers"] = {
            "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Taskbell",
            "version": VERSION,
            "description": "Real-time notifications for business-process tasks. Producers "
            "(the process engine) call with a producer key, people with a user token; both "
            'as `Authorization: Bearer ...`. Errors are `{"error": {"code", "message"}}`. '
            "Live updates: the WebSocket `/ws` and `/events` (docs/protocol.md).",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": name}
            for name in dict.fromkeys(op.tag for op in OPERATIONS)  # in order, once each
        ],
        "paths": paths,
        "components": {
            "schemas": defs,
            "responses": responses,
            "securitySchemes": {
                "producerKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A producer key (TASKBELL_PRODUCER_KEYS)",
                },
                "userToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A user token signed with TASKBELL_SECRET",
                },
                "metricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "TASKBELL_METRICS_TOKEN",
                },
            },
        },
    }
