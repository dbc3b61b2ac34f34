"""The API's description: ``GET /api/v1/openapi.json`` (``server.openapi``) and ``GET
/api``, a reference page made from that document on the server: plain HTML and one
stylesheet of our own (``web/api.css``), no script, no CDN, so it works offline and
under the panel's Content-Security-Policy."""

from __future__ import annotations

import functools
import json
import re
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON
from server.openapi import document

_AUTH_TEXT = {
    "producerKey": "producer key",
    "userToken": "user token",
    "metricsToken": "metrics token",
}


async def openapi_json(request: Request) -> Response:
    return JSON(document(), headers={"Cache-Control": "no-cache"})


async def api_page(request: Request) -> Response:
    headers: dict[str, str] = dict(request.app.state.page_headers)
    return Response(render(), media_type="text/html", headers=headers)


_CODE = re.compile(r"``?([^`]+)``?")


def prose(text: str) -> str:
    """Escaped text, with `code` and ``code`` (Markdown, docstrings) as <code>."""
    return _CODE.sub(r"<code>\1</code>", escape(text))


def _json(value: Any) -> str:
    return escape(json.dumps(value))


def _anchor(name: str) -> str:
    return "schema-" + "".join(c if c.isalnum() else "-" for c in name)


def type_text(schema: dict[str, Any]) -> str:
    """A short HTML description of a JSON schema's type (links for references)."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return f'<a href="#{_anchor(name)}">{escape(name)}</a>'
    if "anyOf" in schema or "oneOf" in schema:
        return " | ".join(type_text(s) for s in schema.get("anyOf", schema.get("oneOf", [])))
    if "const" in schema:
        return f"<code>{_json(schema['const'])}</code>"
    if "enum" in schema:
        return " | ".join(f"<code>{_json(v)}</code>" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {type_text(schema.get('items', {}))}"
    if kind == "object" and "additionalProperties" in schema:
        extra = schema["additionalProperties"]
        inner = type_text(extra) if isinstance(extra, dict) else "any"
        return f"map of {inner}"
    text = escape(str(kind))
    if "format" in schema:
        text += f" ({escape(str(schema['format']))})"
    return text


def _limits(schema: dict[str, Any]) -> str:
    words = []
    for key, label in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("minimum", "≥"),
        ("maximum", "≤"),
    ):
        if key in schema:
            words.append(f"{label} {schema[key]}")
    if "default" in schema:
        words.append(f"default <code>{_json(schema['default'])}</code>")
    if "pattern" in schema:
        words.append(f"pattern <code>{escape(str(schema['pattern']))}</code>")
    return escape("; ").join(words) if words else ""


def _fields(schema: dict[str, Any]) -> str:
    props: dict[str, Any] = schema.get("properties", {})
    if not props:
        return f"<p>{type_text(schema)}</p>"
    required = set(schema.get("required", []))
    rows = []
    for name, prop in props.items():
        need = "required" if name in required else "optional"
        note = prose(str(prop.get("description", "")))
        rows.append(
            f"<tr><td><code>{escape(name)}</code></td><td>{type_text(prop)}</td>"
            f"<td>{need}</td><td>{_limits(prop)} {note}</td></tr>"
        )
    return (
        "<table><thead><tr><th>field</th><th>type</th><th></th><th>rules</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _security(op: dict[str, Any]) -> str:
    options = op.get("security", [])
    if not options:
        return "anyone"
    names = [" and ".join(_AUTH_TEXT[k] for k in opt) or "anyone" for opt in options]
    return " or ".join(names) + " (<code>Authorization: Bearer …</code>)"


def _response_text(doc: dict[str, Any], answer: dict[str, Any]) -> tuple[str, str]:
    if "$ref" in answer:
        answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[-1]]
    content: dict[str, Any] = answer.get("content", {})
    shape = ""
    for media, body in content.items():
        shape = type_text(body["schema"]) if media == "application/json" else escape(media)
    return prose(answer["description"]), shape


def _operation(doc: dict[str, Any], method: str, path: str, op: dict[str, Any]) -> str:
    parts = [
        f'<section class="op" id="{escape(op["operationId"])}">',
        f'<h3><span class="method {method}">{method.upper()}</span> '
        f"<code>{escape(path)}</code></h3>",
        f"<p>{prose(op['summary'])}</p>",
    ]
    if "description" in op:
        parts.append(f"<p>{prose(op['description'])}</p>")
    parts.append(f"<p><strong>Who:</strong> {_security(op)}</p>")
    params = op.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{type_text(p['schema'])}</td><td>{prose(p.get('description', ''))}</td></tr>"
            for p in params
        )
        parts.append(
            "<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th>"
            f"<th></th></tr></thead><tbody>{rows}</tbody></table>"
        )
    body = op.get("requestBody")
    if body is not None:
        schema = body["content"]["application/json"]["schema"]
        need = "" if body.get("required") else " (optional)"
        parts.append(f"<h4>Body{need}</h4><p>JSON: {type_text(schema)}</p>")
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            escape(status), *_response_text(doc, answer)
        )
        for status, answer in op["responses"].items()
    )
    parts.append(
        "<h4>Answers</h4><table><thead><tr><th>status</th><th></th><th>body</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )
    return "".join(parts)


@functools.cache
def render() -> str:
    """The whole page (made once per process: the document does not change)."""
    doc = document()
    by_tag: dict[str, list[str]] = {t["name"]: [] for t in doc["tags"]}
    index: dict[str, list[str]] = {t["name"]: [] for t in doc["tags"]}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            tag = op["tags"][0]
            by_tag[tag].append(_operation(doc, method, path, op))
            index[tag].append(
                f'<li><a href="#{escape(op["operationId"])}"><span class="method {method}">'
                f"{method.upper()}</span> {escape(path)}</a></li>"
            )
    nav = "".join(
        f"<li>{escape(tag)}<ul>{''.join(items)}</ul></li>" for tag, items in index.items()
    )
    sections = "".join(
        f'<h2 id="tag-{escape(tag)}">{escape(tag)}</h2>{"".join(ops)}'
        for tag, ops in by_tag.items()
    )
    schemas = "".join(
        f'<section class="schema" id="{_anchor(name)}"><h3>{escape(name)}</h3>'
        + (f"<p>{prose(str(s['description']))}</p>" if "description" in s else "")
        + _fields(s)
        + "</section>"
        for name, s in sorted(doc["components"]["schemas"].items())
    )
    info = doc["info"]
    return (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(info['title'])} API</title>"
        '<link rel="icon" href="/favicon.ico"><link rel="stylesheet" href="/static/api.css">'
        f'<body class="api-docs"><nav aria-label="Calls"><ul>{nav}</ul></nav><main>'
        f"<h1>{escape(info['title'])} HTTP API <small>{escape(info['version'])}</small></h1>"
        f"<p>{prose(info['description'])}</p>"
        '<p>Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a> '
        "(OpenAPI 3.1).</p>"
        f'{sections}<h2 id="schemas">Schemas</h2>{schemas}</main></body></html>'
    )


routes = [
    Route("/api/v1/openapi.json", openapi_json, methods=["GET"]),
    Route("/api", api_page, methods=["GET"]),
]
