"""The page the engine serves for each step (the task's ``url``): a small form generated
from the user task's Camunda form fields, with Save and Complete buttons. Plain HTML,
no script, everything escaped."""

from __future__ import annotations

from html import escape
from typing import Any

from engine.store import StepRow

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:40rem;margin:2rem auto;background:#fff;border-radius:8px;padding:1.5rem 2rem;
box-shadow:0 1px 3px #0002}
h1{font-size:1.3rem;margin:.2rem 0 1rem}
.meta{color:#5b6475;font-size:.9rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:1rem 0}
dt{color:#5b6475}dd{margin:0}
label{display:block;margin:.8rem 0 .3rem;font-weight:600}
input[type=text],select,textarea{width:100%;padding:.45rem;font:inherit;box-sizing:border-box}
.choices label{font-weight:400;display:inline-block;margin-right:1rem}
.buttons{margin-top:1.4rem;display:flex;gap:.6rem}
button{font:inherit;padding:.5rem 1.1rem;border-radius:6px;border:1px solid #9aa3b5;
background:#fff;cursor:pointer}
button.primary{background:#2454d6;color:#fff;border-color:#2454d6}
.note{padding:.6rem .8rem;border-radius:6px;background:#eef6ee;margin:1rem 0}
.error{background:#fdecec}
"""


def _field(field: Any, value: Any) -> str:
    fid = escape(str(field.id))
    label = escape(str(field.label or field.id))
    current = "" if value is None else str(value)
    if field.type == "enum":
        options = "".join(
            f'<label><input type="radio" name="{fid}" value="{escape(str(o.id))}"'
            f"{' checked' if str(o.id) == current else ''}> {escape(str(o.name or o.id))}</label>"
            for o in field.options
        )
        return f'<label>{label}</label><div class="choices">{options}</div>'
    if field.type == "boolean":
        checked = " checked" if current.lower() in ("true", "1", "on", "yes") else ""
        return f'<label><input type="checkbox" name="{fid}" value="true"{checked}> {label}</label>'
    return (
        f'<label for="f-{fid}">{label}</label>'
        f'<textarea id="f-{fid}" name="{fid}" rows="2">{escape(current)}</textarea>'
    )


def step_page(
    step: StepRow,
    *,
    process_name: str,
    sig: str,
    fields: list[Any],
    data: dict[str, Any],
    open_: bool,
    message: str | None = None,
    error: str | None = None,
    refresh: str | None = None,
    next_step: tuple[str, str] | None = None,
) -> str:
    """The step's page. ``refresh``: a url the page goes to after a second (no script);
    ``next_step``: the title and url of the step that follows this one, offered."""
    title = escape(step.title)
    rows = "".join(
        f"<dt>{escape(str(k))}</dt><dd>{escape(str(v))}</dd>"
        for k, v in data.items()
        # None: nothing to show (the engine's own keys, e.g. no comment yet).
        if not str(k).startswith("_") and v is not None and not isinstance(v, dict | list)
    )
    notes = ""
    if message:
        notes += f'<p class="note">{escape(message)}</p>'
    if error:
        notes += f'<p class="note error">{escape(error)}</p>'
    if next_step is not None:
        next_title, next_url = next_step
        notes += (
            f'<p class="note next">Next: {escape(next_title)} '
            f'<a href="{escape(next_url)}">Open</a></p>'
        )
    head = f'<meta http-equiv="refresh" content="1;url={escape(refresh)}">' if refresh else ""
    if open_:
        values = {**{f.id: f.default_value for f in fields}, **step.form}
        inputs = "".join(_field(f, values.get(f.id)) for f in fields)
        save = '<button name="action" value="save">Save</button>' if fields else ""
        form = (
            f'<form method="post" action="/steps/{escape(step.id)}">'
            f'<input type="hidden" name="sig" value="{escape(sig)}">{inputs}'
            '<div class="buttons"><button class="primary" name="action" value="complete">'
            f"Complete</button>{save}</div></form>"
        )
    else:
        who = f" by {escape(step.completed_by)}" if step.completed_by else ""
        form = f'<p class="note">This step is {escape(step.status)}{who}.</p>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"{head}<title>{title}</title><style>{_STYLE}</style></head><body><main>"
        f'<div class="meta">{escape(process_name)} · step for {escape(step.audience)}</div>'
        f"<h1>{title}</h1>{notes}<dl>{rows}</dl>{form}</main></body></html>"
    )
