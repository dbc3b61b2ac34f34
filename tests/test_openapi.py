"""The OpenAPI document: valid OpenAPI 3.1, generated from the models that validate
bodies, listing every route of the app; and the reference page made from it."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate
from starlette.routing import Mount, Route, WebSocketRoute

from server.api.processes import InstanceCreate
from server.app import create_app
from server.wire import TaskCreate
from tests.support.app import Live, make_settings


async def test_the_document_is_valid_openapi_3_1(embedded: Live) -> None:
    async with embedded.producer() as http:
        got = await http.get("/api/v1/openapi.json")
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = got.json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_of_the_app_is_in_the_document(tmp_path: Any) -> None:
    from server.openapi import document

    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path}/t.db"))
    paths = document()["paths"]
    seen = 0
    for route in app.routes:
        if isinstance(route, Mount | WebSocketRoute):
            continue  # static files; the WebSocket is in docs/protocol.md
        assert isinstance(route, Route), route
        methods = {m.lower() for m in route.methods or ()} - {"head"}
        assert route.path in paths, f"{route.path} is missing from the document"
        missing = methods - set(paths[route.path])
        assert not missing, f"{route.path}: {missing} missing"
        seen += 1
    assert seen > 40
    documented = {(p, m) for p, item in paths.items() for m in item}
    routed = {
        (r.path, m.lower())
        for r in app.routes
        if isinstance(r, Route)
        for m in r.methods or ()
        if m != "HEAD"
    }
    assert documented == routed, documented ^ routed


def test_bodies_come_from_the_validating_models() -> None:
    from server.openapi import document

    doc = document()
    schemas = doc["components"]["schemas"]
    create = doc["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]
    assert create["application/json"]["schema"] == {"$ref": "#/components/schemas/TaskCreate"}
    assert set(schemas["TaskCreate"]["properties"]) == set(TaskCreate.model_fields)
    # owner or role: exactly one (checked by the model), so neither is required alone
    assert set(schemas["TaskCreate"]["required"]) == {"id", "title"}
    assert set(schemas["InstanceCreate"]["properties"]) == set(InstanceCreate.model_fields)
    assert schemas["TaskCreate"]["additionalProperties"] is False
    # Answers come from the TypedDicts the endpoints return.
    assert "postponed_until" in schemas["TaskJSON"]["properties"]
    # Errors share one schema; producer calls name the producer key.
    error = doc["components"]["responses"]["E404"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorJSON"}
    assert set(schemas["ErrorDetail"]["properties"]) >= {"code", "message"}
    get_task = doc["paths"]["/api/v1/tasks/{task_id}"]["get"]
    assert get_task["security"] == [{"producerKey": []}]
    assert get_task["responses"]["404"] == {"$ref": "#/components/responses/E404"}
    schemes = doc["components"]["securitySchemes"]
    assert schemes["producerKey"]["scheme"] == schemes["userToken"]["scheme"] == "bearer"


async def test_the_reference_page_is_served_with_its_stylesheet_and_no_script(
    embedded: Live,
) -> None:
    async with embedded.producer() as http:
        page = await http.get("/api")
        css = await http.get("/static/api.css")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert "<script" not in html and "https://" not in html  # nothing from elsewhere
    assert 'href="/static/api.css"' in html and css.status_code == 200
    for expected in ("/api/v1/tasks/{task_id}/postpone", "TaskCreate", "producer key"):
        assert expected in html
    assert 'id="schema-TaskCreate"' in html
