"""BPMN files to runnable process specs, with the Camunda extensions Taskbell uses.

``load_dir`` parses every ``*.bpmn`` file of a folder on its own: a file that is not
valid BPMN 2.0 (SpiffWorkflow's copy of the OMG schema), cannot be parsed, or whose
process cannot run its first steps becomes a ``LoadError`` naming the file, and the
other files' processes still load.

The parser is SpiffWorkflow's ``CamundaParser``, extended to keep what Camunda Modeler
writes on a user task (``camunda:assignee``, ``camunda:candidateGroups``,
``camunda:dueDate``, ``camunda:formKey``) and a start event's form defaults in the task
spec's ``extensions``, which SpiffWorkflow's serializer stores with each workflow.

Expressions: Camunda Modeler writes JUEL, ``${decision == "reject"}``; SpiffWorkflow
evaluates Python. ``ScriptEngine`` strips the ``${ }`` around an expression, so simple
JUEL (a variable, a comparison) is also a Python expression, and it reads a bare ISO
8601 duration or date in a timer (``PT3S``) as that text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator, full_tag
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs import BpmnProcessSpec
from SpiffWorkflow.bpmn.specs.defaults import StartEvent
from SpiffWorkflow.bpmn.specs.mixins.none_task import NoneTask as NoneTaskMixin
from SpiffWorkflow.camunda.parser import CamundaParser
from SpiffWorkflow.camunda.parser.event_parsers import CamundaStartEventParser
from SpiffWorkflow.camunda.parser.task_spec import CAMUNDA_MODEL_NS, UserTaskParser
from SpiffWorkflow.camunda.serializer import DEFAULT_CONFIG
from SpiffWorkflow.camunda.specs.user_task import UserTask
from SpiffWorkflow.util.task import TaskState

_JUEL = re.compile(r"^\s*[$#]\{(.*)\}\s*$", re.DOTALL)
_ISO_LITERAL = re.compile(
    r"^(R\d*/)?P[0-9YMWDTHS.,]+$|^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$"
)
_CAMUNDA_ATTRIBUTES = ("assignee", "candidateGroups", "candidateUsers", "dueDate", "formKey")


def unwrap(expression: str) -> str:
    """``${expr}`` → ``expr``; anything else unchanged."""
    match = _JUEL.match(expression)
    return match.group(1).strip() if match else expression.strip()


class ScriptEngine(PythonScriptEngine):  # type: ignore[misc]
    """Python expressions, also when written as ``${...}``; ISO 8601 literals as text."""

    def evaluate(self, task: Any, expression: str, external_context: Any = None) -> Any:
        inner = unwrap(expression)
        if _ISO_LITERAL.match(inner):
            return inner
        return super().evaluate(task, inner, external_context)

    def validate(self, expression: str) -> None:
        super().validate(unwrap(expression))


class _UserTaskParser(UserTaskParser):  # type: ignore[misc]
    def parse_extensions(self, node: Any = None) -> dict[str, Any]:
        extensions: dict[str, Any] = super().parse_extensions(node)
        target = node if node is not None else self.node
        for name in _CAMUNDA_ATTRIBUTES:
            value = target.get(f"{{{CAMUNDA_MODEL_NS}}}{name}")
            if value is not None:
                extensions[f"camunda:{name}"] = value
        return extensions


class _StartEventParser(CamundaStartEventParser):  # type: ignore[misc]
    def parse_extensions(self, node: Any = None) -> dict[str, Any]:
        extensions: dict[str, Any] = super().parse_extensions(node)
        defaults: dict[str, str] = {}
        for xml_field in self.xpath(".//camunda:formData/camunda:formField"):
            if xml_field.get("id") and xml_field.get("defaultValue") is not None:
                defaults[xml_field.get("id")] = xml_field.get("defaultValue")
        if defaults:
            extensions["form_defaults"] = defaults
        return extensions


class Parser(CamundaParser):  # type: ignore[misc]
    OVERRIDE_PARSER_CLASSES = {
        **CamundaParser.OVERRIDE_PARSER_CLASSES,
        full_tag("userTask"): (_UserTaskParser, UserTask),
        full_tag("startEvent"): (_StartEventParser, StartEvent),
    }


def serializer() -> BpmnWorkflowSerializer:
    """SpiffWorkflow's JSON serializer with the Camunda converters."""
    registry = BpmnWorkflowSerializer.configure(DEFAULT_CONFIG)
    return BpmnWorkflowSerializer(registry)


@dataclass(frozen=True)
class Definition:
    """One startable process: its BPMN id, name, file, and the specs to run it."""

    id: str
    name: str
    file: str
    spec: BpmnProcessSpec
    subprocess_specs: dict[str, BpmnProcessSpec]
    defaults: dict[str, Any]
    documentation: str | None

    def new_workflow(self, script_engine: ScriptEngine) -> BpmnWorkflow:
        return BpmnWorkflow(self.spec, self.subprocess_specs, script_engine=script_engine)


@dataclass(frozen=True)
class LoadError:
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class Library:
    """What a folder of BPMN files gave: the processes by id, and the files that failed."""

    definitions: dict[str, Definition] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)


def _defaults(spec: BpmnProcessSpec) -> dict[str, Any]:
    start = spec.task_specs.get("Start")
    found: dict[str, Any] = {}
    for task_spec in spec.task_specs.values():
        if isinstance(task_spec, StartEvent) or task_spec is start:
            found.update(getattr(task_spec, "extensions", {}).get("form_defaults", {}))
    return found


def advance(workflow: BpmnWorkflow, ran: list[Any] | None = None) -> None:
    """``do_engine_steps``, and a plain ``bpmn:task`` with no assignee passes through (as
    in Camunda; SpiffWorkflow would wait for someone to complete it). ``ran`` collects
    the tasks that ran."""
    collect = ran.append if ran is not None else None
    while True:
        workflow.do_engine_steps(did_complete_task=collect)
        passing = [
            t
            for t in workflow.get_tasks(state=TaskState.READY, manual=True)
            if isinstance(t.task_spec, NoneTaskMixin)
            and not (getattr(t.task_spec, "extensions", None) or {}).get("camunda:assignee")
        ]
        if not passing:
            return
        for task in passing:
            task.run()
            if ran is not None:
                ran.append(task)


def _trial_run(definition: Definition) -> None:
    """Start the process once, in memory, with its start form's defaults: a process that
    cannot run its first steps (a bad expression, no outgoing flow) fails at load."""
    workflow = definition.new_workflow(ScriptEngine())
    workflow.get_tasks()[0].data.update(definition.defaults)
    advance(workflow)


_validator: BpmnValidator | None = None


def validator() -> BpmnValidator:
    """The BPMN 2.0 XML schema (with DI), loaded once."""
    global _validator
    if _validator is None:
        _validator = BpmnValidator()
    return _validator


def load_file(path: Path) -> tuple[list[Definition], LoadError | None]:
    """The processes of one file, validated against the BPMN 2.0 schema, parsed, and
    each started once in memory; or why not."""
    name = path.name
    try:
        parser = Parser(validator=validator())
        parser.add_bpmn_file(str(path))
        ids = parser.get_process_ids()
        executable = [pid for pid in ids if _is_executable(parser, pid)]
        if not executable:
            return [], LoadError(name, 'no executable process (isExecutable="true") in the file')
        found: list[Definition] = []
        for pid in executable:
            spec = parser.get_spec(pid)
            definition = Definition(
                id=pid,
                name=spec.description or pid,
                file=name,
                spec=spec,
                subprocess_specs=parser.get_subprocess_specs(pid),
                defaults=_defaults(spec),
                documentation=_documentation(parser, pid),
            )
            _trial_run(definition)
            found.append(definition)
    except Exception as exc:  # any parse or validation error: report it, load the rest
        return [], LoadError(name, _describe(exc))
    return found, None


def _is_executable(parser: Parser, process_id: str) -> bool:
    node = parser.get_process_parser(process_id).node
    return str(node.get("isExecutable", "true")).lower() != "false"


def _documentation(parser: Parser, process_id: str) -> str | None:
    node = parser.get_process_parser(process_id).node
    for child in node:
        if str(child.tag).endswith("}documentation") and child.text:
            return " ".join(str(child.text).split())
    return None


_NAMESPACE = re.compile(r"\{http://www\.omg\.org/spec/BPMN/20100524/MODEL\}")


def _describe(exc: BaseException) -> str:
    text = _NAMESPACE.sub("bpmn:", " ".join(str(exc).split())) or type(exc).__name__
    line = getattr(exc, "line_number", None) if isinstance(exc, ValidationException) else None
    if line and f"line {line}" not in text:
        text = f"line {line}: {text}"
    task = getattr(exc, "task", None)
    spec = getattr(task, "task_spec", None) or getattr(exc, "task_spec", None)
    if spec is not None:
        text += f" (in {getattr(spec, 'bpmn_name', None) or spec.name!s}, id {spec.name!s})"
    notes = [str(n) for n in getattr(exc, "__notes__", []) or []]
    if notes:
        text += "; " + "; ".join(notes)
    return f"{type(exc).__name__}: {text}"[:500]


def load_dir(folder: Path) -> Library:
    """Every ``*.bpmn`` file of ``folder`` (sorted by name); a process id seen in an
    earlier file wins and the later file is reported."""
    library = Library()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".bpmn" and p.is_file())
    for path in files:
        definitions, error = load_file(path)
        if error is not None:
            library.errors.append(error)
            continue
        for definition in definitions:
            if definition.id in library.definitions:
                other = library.definitions[definition.id].file
                library.errors.append(
                    LoadError(path.name, f"process id {definition.id!r} is already in {other}")
                )
                continue
            library.definitions[definition.id] = definition
    return library
