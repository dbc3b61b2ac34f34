"""The engine's decisions, synchronous: start an instance, complete a step, fire timers,
and after every change turn the workflow's state into Taskbell calls.

Every public method is one SQLite transaction that saves the workflow, the steps and the
queued Taskbell calls together (see ``store``); the caller then wakes the sender. The
methods run on the event loop's thread and never await, so two changes never interleave.

A *step* is a Taskbell task standing for one READY manual task (a user task) of a
workflow. Its id is ``{instance}.{task spec}.{n}`` (n counts that spec's steps in the
instance: a loop back gives ``.2``), stored with the workflow, so a restart or a repeated
create never makes a second task.

From the user task to the Taskbell task: the owner from ``camunda:assignee``, else the
role from ``camunda:candidateGroups`` (the first group) or the task's lane (``lane_role``);
``due_at`` from ``camunda:dueDate``; ``priority`` from the ``priority`` property;
``actions`` from the form's first enum field (``task_actions``, with ``comment.<value>``
properties); ``follows`` when the step is made by a completion and is for the person who
completed it, or for a queue they are in (``Handoff``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.event_definitions.item_aware_event import ErrorEventDefinition
from SpiffWorkflow.bpmn.specs.event_definitions.simple import (
    CancelEventDefinition,
    TerminateEventDefinition,
)
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.end_event import EndEvent
from SpiffWorkflow.util.task import TaskState

from engine.bpmn import Definition, Library, ScriptEngine, advance, serializer
from engine.store import Call, StepRow, Store

log = logging.getLogger("engine")

KINDS = frozenset({"activity", "email", "edit_record", "page"})
_TEMPLATE = re.compile(r"\$\{([^}]*)\}")
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,120}$")
TITLE_LIMIT = 1000


PRIORITIES = ("low", "normal", "high", "urgent")
COMMENT_RULES = ("none", "optional", "required")
MAX_ACTIONS = 5


class _NoName(Exception):
    pass


def lane_role(lane: str) -> str:
    """The Taskbell role of a lane: its name, lower case, runs of spaces as ``_``
    (lane "Finance Team" is role ``finance_team``)."""
    return re.sub(r"\s+", "_", lane.strip().lower())


def decision_field(spec: Any) -> Any | None:
    """The user task's first enum form field: its values are the task's actions."""
    form = getattr(spec, "form", None)
    for field in getattr(form, "fields", []) or []:
        if field.type == "enum" and field.options:
            return field
    return None


def comment_rule(spec: Any, action_id: str) -> str:
    """Whether choosing ``action_id`` asks for a comment: the task's Camunda property
    ``comment.<action id>`` (``none`` | ``optional`` | ``required``); without one,
    ``optional`` when the form has a ``comment`` field, else ``none``."""
    ext: dict[str, Any] = getattr(spec, "extensions", None) or {}
    rule = str(ext.get(f"comment.{action_id}", "")).strip().lower()
    if rule in COMMENT_RULES:
        return rule
    form = getattr(spec, "form", None)
    has_comment = any(f.id == "comment" for f in getattr(form, "fields", []) or [])
    return "optional" if has_comment else "none"


def task_actions(spec: Any) -> list[dict[str, str]] | None:
    """Taskbell ``actions`` from the decision field: one per value (``id``, ``label`` =
    the value's name), with its comment rule; None without one, or with more than 5."""
    field = decision_field(spec)
    if field is None:
        return None
    if len(field.options) > MAX_ACTIONS:
        log.warning("%s: %s has more than %d values: no actions", spec.name, field.id, MAX_ACTIONS)
        return None
    return [
        {
            "id": str(o.id),
            "label": str(o.name or o.id),
            "comment": comment_rule(spec, str(o.id)),
        }
        for o in field.options
    ]


@dataclass(frozen=True)
class Handoff:
    """The step just completed, by whom, and the roles' members (as Taskbell had them):
    a new step for the same person, or for a queue they are in, ``follows`` it."""

    step_id: str
    person: str | None
    role: str | None
    members: dict[str, frozenset[str]]

    def hands_to(self, owner: str | None, role: str | None) -> bool:
        if self.person is None:
            return False
        if owner is not None:
            return owner == self.person
        if role is None:
            return False
        return role == self.role or self.person in self.members.get(role, frozenset())


class EngineError(Exception):
    """A request the engine refuses: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Outcome:
    """What a webhook or a timer did: ``changed`` when a workflow moved on."""

    changed: bool
    note: str


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Engine:
    def __init__(self, library: Library, store: Store, public_url: str) -> None:
        self.library = library
        self.store = store
        self.public_url = public_url.rstrip("/")
        self.script_engine = ScriptEngine()
        self.serializer = serializer()
        self._cache: dict[str, BpmnWorkflow] = {}
        with store.tx():
            key = store.get_meta("link_key")
            if key is None:
                key = secrets.token_urlsafe(32)
                store.set_meta("link_key", key)
        self._link_key = key.encode()

    # ------------------------------------------------------------------ helpers

    def link_sig(self, step_id: str) -> str:
        """The capability in a step page's link (only its owner sees the link)."""
        digest = hmac.new(self._link_key, step_id.encode(), hashlib.sha256).hexdigest()
        return digest[:32]

    def step_url(self, step_id: str) -> str:
        return f"{self.public_url}/steps/{step_id}?sig={self.link_sig(step_id)}"

    def _dump(self, workflow: BpmnWorkflow) -> str:
        text: str = self.serializer.serialize_json(workflow)
        return text

    def workflow(self, instance_id: str) -> BpmnWorkflow:
        cached = self._cache.get(instance_id)
        if cached is not None:
            return cached
        row = self.store.instance(instance_id)
        if row is None:
            raise EngineError(404, "instance_not_found", f"no instance {instance_id!r}")
        workflow: BpmnWorkflow = self.serializer.deserialize_json(row.workflow)
        workflow.script_engine = self.script_engine
        if row.status == "running":
            self._cache[instance_id] = workflow
        return workflow

    def _forget(self, instance_id: str) -> None:
        self._cache.pop(instance_id, None)

    def evaluate(self, task: Any, expression: str) -> Any:
        return self.script_engine.evaluate(task, expression)

    def render(self, task: Any, template: str) -> str:
        """``${expr}`` parts of a name filled in from the task's data ('' when missing)."""

        def one(match: re.Match[str]) -> str:
            try:
                value = self.script_engine.environment.evaluate(match.group(1), dict(task.data))
            except Exception:
                return ""
            return "" if value is None else str(value)

        return _TEMPLATE.sub(one, template)

    # ------------------------------------------------------------------ start

    def start(self, process: str, data: dict[str, Any], instance_id: str | None = None) -> str:
        definition = self.library.definitions.get(process)
        if definition is None:
            raise EngineError(404, "process_not_found", f"no startable process {process!r}")
        if instance_id is not None:
            if not _INSTANCE_ID.match(instance_id):
                raise EngineError(422, "invalid", "id: 1-120 of A-Z a-z 0-9 _ . : -")
            existing = self.store.instance(instance_id)
            if existing is not None:
                if existing.process != process:
                    raise EngineError(409, "instance_id_conflict", "that id is taken")
                return instance_id
        instance_id = instance_id or f"{process}-{uuid.uuid4().hex[:12]}"
        workflow = definition.new_workflow(self.script_engine)
        workflow.get_tasks()[0].data.update({**definition.defaults, **data})
        failure = self._run(workflow)
        with self.store.tx():
            self.store.insert_instance(instance_id, process, definition.name, self._dump(workflow))
            self.store.enqueue(
                instance_id,
                "POST",
                "/api/v1/processes",
                {"id": instance_id, "name": definition.name, "expect_more": True},
            )
            self._sync(instance_id, definition.name, workflow, failure)
        if self.store.instance(instance_id) is not None:
            self._cache[instance_id] = workflow
            self._drop_if_ended(instance_id)
        log.info("started %s (%s)", instance_id, process)
        return instance_id

    def _run(self, workflow: BpmnWorkflow, ran: list[Any] | None = None) -> str | None:
        """Run the engine's own steps; a failure (a bad expression, no gateway flow that
        matches) is returned as text and ends the instance with ``error``."""
        try:
            advance(workflow, ran)
        except Exception as exc:
            log.warning("workflow failed: %s", exc)
            return " ".join(str(exc).split())[:500] or type(exc).__name__
        return None

    def _drop_if_ended(self, instance_id: str) -> None:
        row = self.store.instance(instance_id)
        if row is not None and row.status != "running":
            self._forget(instance_id)

    # ------------------------------------------------------------------ sync

    def _sync(
        self,
        instance_id: str,
        name: str,
        workflow: BpmnWorkflow,
        failure: str | None,
        after: Handoff | None = None,
    ) -> None:
        """Inside a transaction: steps for READY user tasks, cancels for steps whose task
        is no longer READY, and the end event when the workflow is done."""
        self.store.save_workflow(instance_id, self._dump(workflow))
        ready = {str(t.id): t for t in workflow.get_tasks(state=TaskState.READY, manual=True)}
        known = {s.spiff_task_id: s for s in self.store.steps(instance_id)}
        ending = failure is not None or workflow.completed
        for step in known.values():
            if step.status != "open" or step.spiff_task_id in ready:
                continue
            self.store.end_step(step.id, "canceled")
            if not ending:
                self.store.enqueue(instance_id, "POST", f"/api/v1/tasks/{step.id}/cancel", None)
        if failure is None and not ending:
            for task_id, task in ready.items():
                if task_id not in known:
                    failure = self._new_step(instance_id, name, task, after)
                    if failure is not None:
                        break
        if failure is not None:
            self._end(instance_id, "error", failure)
        elif workflow.completed:
            status, reason = self._end_kind(workflow)
            self._end(instance_id, status, reason)

    def _new_step(
        self, instance_id: str, name: str, task: Any, after: Handoff | None
    ) -> str | None:
        spec = task.task_spec
        ext: dict[str, Any] = getattr(spec, "extensions", None) or {}
        audience = self._audience(task)
        if isinstance(audience, str):
            return audience
        owner, role = audience
        n = self.store.count_steps(instance_id, spec.name) + 1
        step_id = f"{instance_id}.{spec.name}.{n}"
        title = self.render(task, spec.bpmn_name or spec.name).strip() or spec.name
        kind = ext.get("kind") if ext.get("kind") in KINDS else "page"
        body: dict[str, Any] = {"id": step_id, "owner": owner}  # None: offered to a role
        if role is not None:
            body["role"] = role
        body.update(
            title=title[:TITLE_LIMIT],
            kind=kind,
            process={"instance_id": instance_id, "name": name},
            url=self.step_url(step_id),
        )
        record = task.data.get("record")
        if isinstance(record, dict) and record.get("entity") and record.get("id"):
            body["record"] = {
                "entity": str(record["entity"]),
                "id": str(record["id"]),
                "title": str(record.get("title") or record["id"]),
            }
        due_at = self._due_at(task, ext.get("camunda:dueDate"))
        if due_at is not None:
            body["due_at"] = due_at
        priority = self._priority(task, ext.get("priority"))
        if priority is not None:
            body["priority"] = priority
        actions = task_actions(spec)
        if actions:
            body["actions"] = actions
        follows = after.step_id if after is not None and after.hands_to(owner, role) else None
        if follows is not None:
            body["follows"] = follows
        self.store.insert_step(
            id=step_id,
            instance_id=instance_id,
            spiff_task_id=str(task.id),
            spec=spec.name,
            owner=owner or "",
            title=body["title"],
            body=body,
            due_at=due_at,
            follows=follows,
        )
        self.store.enqueue(instance_id, "POST", "/api/v1/tasks", body)
        return None

    def _audience(self, task: Any) -> tuple[str | None, str | None] | str:
        """Who a user task is for: ``(owner, None)`` from ``camunda:assignee``, else
        ``(None, role)`` from ``camunda:candidateGroups`` (the first group) or the task's
        lane; or, as text, why there is nobody (the instance then fails)."""
        spec = task.task_spec
        ext: dict[str, Any] = getattr(spec, "extensions", None) or {}
        assignee = ext.get("camunda:assignee")
        groups = ext.get("camunda:candidateGroups")
        lane = getattr(spec, "lane", None)
        if assignee:
            try:
                return self._name(task, assignee), None
            except _NoName as exc:
                return f"user task {spec.name!r}: camunda:assignee {assignee!r}: {exc}"
        if groups:
            try:
                group = self._name(task, groups)
            except _NoName as exc:
                return f"user task {spec.name!r}: camunda:candidateGroups {groups!r}: {exc}"
            first = group.split(",")[0].strip()
            if not first:
                return f"user task {spec.name!r}: camunda:candidateGroups {groups!r} is empty"
            return None, first
        if lane:
            return None, lane_role(str(lane))
        return (
            f"user task {spec.name!r} has nobody to do it: give it a camunda:assignee, "
            "camunda:candidateGroups, or put it in a lane"
        )

    def _name(self, task: Any, expression: str) -> str:
        """An assignee or group expression's value (``_NoName`` when it has none)."""
        try:
            value = self.evaluate(task, expression) if "${" in expression else expression
        except Exception as exc:
            raise _NoName(str(exc)) from exc
        text = "" if value is None else str(value).strip()
        if not text or text == "None":
            raise _NoName("is empty")
        return text

    def _priority(self, task: Any, expression: Any) -> str | None:
        """The ``priority`` Camunda property (``high``, or ``${priority}`` over the data)."""
        if not isinstance(expression, str) or not expression.strip():
            return None
        try:
            value = self.evaluate(task, expression) if "${" in expression else expression
        except Exception as exc:
            log.warning("priority %r: %s", expression, exc)
            return None
        text = str(value).strip().lower()
        if text not in PRIORITIES:
            log.warning("priority %r is %r, not one of %s", expression, text, PRIORITIES)
            return None
        return text

    def _due_at(self, task: Any, expression: str | None) -> str | None:
        """``camunda:dueDate`` as ISO 8601 UTC, for Taskbell's ``due_at``. The value (an
        expression over the data, e.g. ``${due}``, or a literal) is a date or date-time
        (without a zone: UTC), or an ISO 8601 duration counted from the moment the step
        is created (``PT2H``). One that cannot be read is left out (and logged)."""
        if not expression:
            return None
        try:
            value = str(self.evaluate(task, expression))
            if value.upper().startswith("P"):
                parsed = TimerEventDefinition.parse_iso_duration(value)
                delta: timedelta = TimerEventDefinition.get_timedelta_from_start(parsed)
                return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            when: datetime = TimerEventDefinition.get_datetime(value)
            if when.tzinfo is not None:
                when = when.astimezone(UTC)
            return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        except Exception as exc:
            log.warning("dueDate %r: %s", expression, exc)
            return None

    def _end_kind(self, workflow: BpmnWorkflow) -> tuple[str, str | None]:
        """How a finished workflow ended: a terminate (or cancel) end event cancels the
        instance, an error end event fails it, any other end completes it. Only the
        process's own end events count: one inside a subprocess ends that subprocess (an
        error there is the subprocess's, which an error boundary may have caught)."""
        for task in workflow.get_tasks(state=TaskState.COMPLETED):
            spec = task.task_spec
            if not isinstance(spec, EndEvent) or task.workflow is not workflow:
                continue
            definition = spec.event_definition
            label = spec.bpmn_name or spec.name
            if isinstance(definition, TerminateEventDefinition | CancelEventDefinition):
                return "canceled", f"terminate end event: {label}"
            if isinstance(definition, ErrorEventDefinition):
                return "error", f"error end event: {label}"
        return "completed", None

    def _end(self, instance_id: str, status: str, reason: str | None) -> None:
        row = self.store.instance(instance_id)
        if row is not None and row.status != "running":
            return
        self.store.end_instance(instance_id, status, reason)
        action = {"completed": "complete", "canceled": "cancel", "error": "fail"}[status]
        body = {"reason": reason} if reason else None
        self.store.enqueue(instance_id, "POST", f"/api/v1/processes/{instance_id}/{action}", body)
        for step in self.store.steps(instance_id):
            if step.status == "open":
                self.store.end_step(step.id, "canceled")
        log.info("instance %s ended: %s %s", instance_id, status, reason or "")

    # ------------------------------------------------------------------ webhooks

    def seen(self, webhook_id: str) -> bool:
        return self.store.seen(webhook_id)

    def _ignore(self, webhook_id: str, note: str) -> Outcome:
        with self.store.tx():
            self.store.mark_seen(webhook_id)
        return Outcome(False, note)

    def task_completed(
        self,
        webhook_id: str,
        task: dict[str, Any],
        actor: str | None,
        members: dict[str, frozenset[str]] | None = None,
    ) -> Outcome:
        """Taskbell says a step was completed: complete its user task once, with the
        decision in the data, and run on. ``members``: the roles' members as Taskbell has
        them now, to tell whether a new queue step is for a queue the person is in."""
        if self.store.seen(webhook_id):
            return Outcome(False, "repeat delivery")
        step = self.store.step(str(task.get("id", "")))
        if step is None:
            return self._ignore(webhook_id, "not a step of this engine")
        if step.status != "open":
            return self._ignore(webhook_id, f"step already {step.status}")
        row = self.store.instance(step.instance_id)
        if row is None or row.status != "running":
            return self._ignore(webhook_id, "instance not running")
        workflow = self.workflow(step.instance_id)
        spiff_task = workflow.get_task_from_id(uuid.UUID(step.spiff_task_id))
        if spiff_task is None or spiff_task.state != TaskState.READY:
            return self._ignore(webhook_id, "its user task is not READY")
        # Who completed it: Taskbell's completed_by (a person), else the task's holder
        # (the producer completed it: the engine's page, for its owner or claimer).
        person = task.get("completed_by") or actor or task.get("owner") or step.owner or None
        completed_by = None if person is None else str(person)
        values = self._form_values(spiff_task, step)
        values.update(self._outcome(spiff_task, task, values))
        spiff_task.data.update(values)
        spiff_task.data.update({"completed_by": completed_by, "actor": actor})
        after = Handoff(step.id, completed_by, step.role, members or {})
        try:
            try:
                spiff_task.run()
                failure = self._run(workflow)
            except Exception as exc:
                failure = " ".join(str(exc).split())[:500] or type(exc).__name__
            with self.store.tx():
                self.store.mark_seen(webhook_id)
                self.store.end_step(step.id, "completed", completed_by)
                self._sync(step.instance_id, row.name, workflow, failure, after=after)
        except BaseException:
            self._forget(step.instance_id)  # the database still has the workflow before
            raise
        self._drop_if_ended(step.instance_id)
        return Outcome(True, "completed")

    def _outcome(self, task: Any, data: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
        """The decision: Taskbell's ``outcome`` (the action chosen on the card, or sent
        by the engine's page) goes into ``outcome`` and into the form's enum field that
        offers it (e.g. ``decision``), its ``comment`` into ``comment``. Without an
        outcome, the enum field keeps what the page saved (or its default), and
        ``outcome`` is that value; without a comment, the page's."""
        field = decision_field(task.task_spec)
        values: dict[str, Any] = {
            "outcome": saved.get(field.id) if field is not None else None,
            "comment": saved.get("comment") or None,
        }
        outcome = data.get("outcome")
        if isinstance(outcome, str) and outcome:
            values["outcome"] = outcome
            form = getattr(task.task_spec, "form", None)
            for one in getattr(form, "fields", []) or []:
                if one.type == "enum" and outcome in {str(o.id) for o in one.options}:
                    values[one.id] = outcome
                    break
        comment = data.get("comment")
        if isinstance(comment, str) and comment.strip():
            values["comment"] = comment
        return values

    def task_canceled(self, webhook_id: str, task: dict[str, Any], actor: str | None) -> Outcome:
        """A step canceled in Taskbell that the engine did not cancel itself: its user task
        can never be completed, so the instance is canceled."""
        if self.store.seen(webhook_id):
            return Outcome(False, "repeat delivery")
        step = self.store.step(str(task.get("id", "")))
        if step is None:
            return self._ignore(webhook_id, "not a step of this engine")
        if step.status != "open":
            return self._ignore(webhook_id, f"step already {step.status}")
        who = actor or "the producer"
        workflow = self.workflow(step.instance_id)
        try:
            workflow.cancel()
            with self.store.tx():
                self.store.mark_seen(webhook_id)
                self.store.end_step(step.id, "canceled")
                self.store.save_workflow(step.instance_id, self._dump(workflow))
                self._end(step.instance_id, "canceled", f"step {step.id} was canceled by {who}")
        finally:
            self._forget(step.instance_id)
        return Outcome(True, "instance canceled")

    def _form_values(self, task: Any, step: StepRow) -> dict[str, Any]:
        """What the step's form saved, over the form fields' defaults."""
        values: dict[str, Any] = {}
        form = getattr(task.task_spec, "form", None)
        for field in getattr(form, "fields", []) or []:
            if field.default_value not in (None, ""):
                values[field.id] = field.default_value
        values.update(step.form)
        return values

    def call_refused(self, call: Call, error: str) -> None:
        """Taskbell refused to create a step for good (e.g. 422: an owner with a space,
        from a bad ``camunda:assignee``): the instance cannot go on, so it fails, with
        Taskbell's answer as the reason. Other refusals are only kept in the log."""
        if call.method != "POST" or call.path != "/api/v1/tasks" or call.instance_id is None:
            return
        row = self.store.instance(call.instance_id)
        if row is None or row.status != "running":
            return
        step_id = str((call.body or {}).get("id", ""))
        with self.store.tx():
            self._end(call.instance_id, "error", f"Taskbell refused step {step_id}: {error}")
        self._forget(call.instance_id)

    # ------------------------------------------------------------------ timers

    def tick(self) -> int:
        """Fire the timers that are due in every running instance; how many moved on."""
        moved = 0
        for instance_id, name in self.store.running():
            workflow = self.workflow(instance_id)
            ran: list[Any] = []
            workflow.refresh_timers()
            failure = self._run(workflow, ran)
            if not ran and failure is None:
                continue
            try:
                with self.store.tx():
                    self._sync(instance_id, name, workflow, failure)
            except BaseException:
                self._forget(instance_id)
                raise
            self._drop_if_ended(instance_id)
            moved += 1
        return moved

    # ------------------------------------------------------------------ forms

    def save_step_form(self, step_id: str, values: dict[str, Any]) -> StepRow:
        step = self.store.step(step_id)
        if step is None:
            raise EngineError(404, "step_not_found", f"no step {step_id!r}")
        if step.status != "open":
            raise EngineError(409, "step_ended", f"the step is {step.status}")
        with self.store.tx():
            self.store.save_form(step_id, {**step.form, **values})
        saved = self.store.step(step_id)
        assert saved is not None
        return saved

    def step_task(self, step: StepRow) -> Any:
        """The SpiffWorkflow task of a step, or None once its instance ended."""
        try:
            workflow = self.workflow(step.instance_id)
        except EngineError:
            return None
        return workflow.get_task_from_id(uuid.UUID(step.spiff_task_id))

    # ------------------------------------------------------------------ views

    def roles(self) -> list[str]:
        """The roles the loaded processes offer steps to by name (``candidateGroups``
        without an expression, and lanes): whose members decide ``follows``."""
        found: set[str] = set()
        for definition in self.library.definitions.values():
            for spec in definition.spec.task_specs.values():
                ext: dict[str, Any] = getattr(spec, "extensions", None) or {}
                if not ext.get("camunda:assignee") and getattr(spec, "manual", False):
                    groups = ext.get("camunda:candidateGroups")
                    lane = getattr(spec, "lane", None)
                    if groups and "${" not in groups:
                        found.add(groups.split(",")[0].strip())
                    elif not groups and lane:
                        found.add(lane_role(str(lane)))
        return sorted(r for r in found if r)

    def definitions(self) -> list[Definition]:
        return list(self.library.definitions.values())

    def view(self, instance_id: str) -> dict[str, Any]:
        row = self.store.instance(instance_id)
        if row is None:
            raise EngineError(404, "instance_not_found", f"no instance {instance_id!r}")
        workflow = self.workflow(instance_id)
        waiting = [
            t.task_spec.bpmn_name or t.task_spec.name
            for t in workflow.get_tasks(state=TaskState.WAITING)
            if isinstance(getattr(t.task_spec, "event_definition", None), TimerEventDefinition)
        ]
        steps = self.store.steps(instance_id)
        calls = self.store.calls(instance_id)
        ended = row.ended_at
        return {
            "id": row.id,
            "process": row.process,
            "name": row.name,
            "status": row.status,
            "end_reason": row.end_reason,
            "started_at": _iso(row.started_at),
            "ended_at": _iso(ended),
            "duration_ms": None if ended is None else round((ended - row.started_at) * 1000),
            "data": _jsonable(self._data(workflow)),
            "current": [
                {
                    "id": s.id,
                    "owner": s.owner or None,
                    "role": s.role,
                    "title": s.title,
                    "url": s.body["url"],
                }
                for s in steps
                if s.status == "open"
            ],
            "waiting_timers": waiting,
            "steps": [_step_json(s) for s in steps],
            "pending_calls": sum(1 for c in calls if c["status"] == "pending"),
            "refused_calls": [c for c in calls if c["status"] == "refused"],
        }

    def _data(self, workflow: BpmnWorkflow) -> dict[str, Any]:
        if workflow.completed:
            return dict(workflow.data)
        last = workflow.last_task
        if last is not None:
            return dict(last.data)
        return dict(workflow.get_tasks()[0].data)

    def list_view(self) -> list[dict[str, Any]]:
        return [
            {
                "id": r.id,
                "process": r.process,
                "name": r.name,
                "status": r.status,
                "started_at": _iso(r.started_at),
                "ended_at": _iso(r.ended_at),
                "duration_ms": None
                if r.ended_at is None
                else round((r.ended_at - r.started_at) * 1000),
            }
            for r in self.store.instances()
        ]


def _step_json(s: StepRow) -> dict[str, Any]:
    return {
        "id": s.id,
        "task": s.spec,
        "owner": s.owner or None,
        "role": s.role,
        "title": s.title,
        "status": s.status,
        "due_at": s.due_at,
        "follows": s.follows,
        "completed_by": s.completed_by,
        "form": s.form,
        "created_at": _iso(s.created_at),
        "ended_at": _iso(s.ended_at),
    }


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    """Instance data as JSON (anything JSON has no type for, such as a date a script
    made, as its text)."""
    out: dict[str, Any] = orjson.loads(orjson.dumps(data, default=str))
    return out
