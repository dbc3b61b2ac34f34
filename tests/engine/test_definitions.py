"""Loading BPMN files: what cannot be parsed or run is a clear error naming the file, and
every other process still runs; an error end event fails the instance in Taskbell; and
Taskbell's process statistics match the engine's own view of its instances."""

from __future__ import annotations

import asyncio
import shutil
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.app import SAMPLES
from engine.bpmn import load_dir
from tests.engine.support import (
    EngineHandle,
    People,
    copy_samples,
    engine_config,
    eventually,
    serve_engine,
    submit_step,
)
from tests.support.app import Live

HERE = Path(__file__).resolve().parent


@pytest.fixture
async def mixed(taskbell: Live, tmp_path: Path) -> AsyncIterator[EngineHandle]:
    """An engine on the samples plus the test files (two of which cannot load)."""
    folder = copy_samples(tmp_path / "bpmn")
    for path in (HERE / "bpmn").glob("*.bpmn"):
        shutil.copy(path, folder / path.name)
    (folder / "notes.txt").write_text("not BPMN, not looked at")
    async with serve_engine(engine_config(taskbell.base_url, tmp_path / "e.db", bpmn=folder)) as e:
        yield e


def test_load_errors_name_the_file() -> None:
    library = load_dir(HERE / "bpmn")
    assert sorted(library.definitions) == ["caught_error", "fails_later", "gives_up", "handoff"]
    errors = {e.file: e.message for e in library.errors}
    assert sorted(errors) == ["broken.bpmn", "not_bpmn.bpmn", "unrunnable.bpmn"]
    assert errors["broken.bpmn"].startswith("XMLSyntaxError: Opening and ending tag mismatch")
    assert "line 6" in errors["broken.bpmn"]
    assert "SyntaxError" in errors["unrunnable.bpmn"]
    assert "(in Compute, id compute)" in errors["unrunnable.bpmn"]
    # Well-formed XML that is not BPMN 2.0 (the schema refuses it), with its line.
    assert errors["not_bpmn.bpmn"].startswith(
        "ValidationException: line 7: Element 'bpmn:approval': This element is not expected"
    )


def test_the_samples_are_valid_bpmn_with_diagrams() -> None:
    """The loader validates against the BPMN 2.0 schema (and DI): the samples pass, and
    each carries a diagram for every element of its process, as Camunda Modeler saves."""
    library = load_dir(SAMPLES)
    assert library.errors == []
    assert sorted(library.definitions) == ["customer_onboarding", "escalation", "invoice_approval"]
    ns = {
        "bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL",
        "bpmndi": "http://www.omg.org/spec/BPMN/20100524/DI",
    }
    for path in SAMPLES.glob("*.bpmn"):
        root = ET.parse(path).getroot()
        elements = {
            e.get("id")
            for e in root.iterfind("bpmn:process/*", ns)
            if e.get("id") and not e.tag.endswith("documentation")
        }
        drawn = {e.get("bpmnElement") for e in root.iterfind(".//bpmndi:BPMNPlane/*", ns)}
        assert elements and elements <= drawn, (path.name, elements - drawn)


async def test_the_other_processes_still_run(mixed: EngineHandle, people: People) -> None:
    async with mixed.client() as c:
        listed = (await c.get("/processes")).json()
        assert sorted(p["id"] for p in listed["processes"]) == [
            "caught_error",
            "customer_onboarding",
            "escalation",
            "fails_later",
            "gives_up",
            "handoff",
            "invoice_approval",
        ]
        assert sorted(e["file"] for e in listed["errors"]) == [
            "broken.bpmn",
            "not_bpmn.bpmn",
            "unrunnable.bpmn",
        ]
        refused = await c.post("/instances", json={"process": "broken"})
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "process_not_found"
        bad = await c.post("/instances", json={"process": "invoice_approval", "data": []})
        assert bad.status_code == 422
    iid = await mixed.start("invoice_approval")
    await people.wait_task("bob", iid, "approve_invoice")


async def test_an_error_end_event_fails_the_instance(mixed: EngineHandle, people: People) -> None:
    iid = await mixed.start("gives_up", owner="carol", thing="the impossible")
    step = await people.wait_task("carol", iid, "try_it")
    assert step["title"] == "Try the impossible"
    await people.complete("carol", step["id"])
    failed = await people.wait_process(iid, "error")
    assert failed["duration_ms"] > 0
    view = await mixed.view(iid)
    assert view["status"] == "error" and view["end_reason"] == "error end event: Gave up"


async def test_a_process_that_cannot_go_on_fails_with_the_reason(
    mixed: EngineHandle, people: People
) -> None:
    iid = await mixed.start("fails_later", owner="bob", people=0)
    step = await people.wait_task("bob", iid, "enter_amount")
    await people.complete("bob", step["id"])
    await people.wait_process(iid, "error")
    view = await mixed.view(iid)
    assert view["status"] == "error"
    assert "division by zero" in view["end_reason"]


async def test_a_step_taskbell_refuses_fails_the_instance(
    mixed: EngineHandle, people: People
) -> None:
    iid = await mixed.start("gives_up", owner="two words", thing="it")
    failed = await people.wait_process(iid, "error")
    assert failed["steps"] == []
    view = await mixed.view(iid)
    assert view["status"] == "error"
    assert view["end_reason"].startswith(f"Taskbell refused step {iid}.try_it.1: HTTP 422")
    assert [c["path"] for c in view["refused_calls"]] == ["/api/v1/tasks"]


async def test_a_start_with_its_own_id_is_idempotent(engine: EngineHandle, people: People) -> None:
    async with engine.client() as c:
        body = {"process": "invoice_approval", "id": "inv-42", "data": {"requester": "carol"}}
        first = await c.post("/instances", json=body)
        again = await c.post("/instances", json=body)
        other = await c.post("/instances", json={**body, "process": "escalation"})
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    await people.wait_task("carol", "inv-42", "approve_invoice")
    process = await people.process("inv-42")
    assert process["expect_more"] is True and len(process["steps"]) == 1


async def test_statistics_in_taskbell_match_the_engine(mixed: EngineHandle, people: People) -> None:
    """Counts match exactly. Durations: Taskbell's clock starts when the engine's call
    lands and stops when its end call lands, so the two differ by the engine's sending
    lag; both must lie in the window the test itself sees for the instance, from before
    its first step was seen (after the start was asked) to after its last completion
    was sent (before Taskbell showed it ended). Causal bounds, no tolerance."""
    windows: dict[str, list[float]] = {}  # id: [asked, first step seen, last sent, ended]

    async def start(process: str, spec: str, user: str, **data: Any) -> tuple[str, Any]:
        asked = time.time()
        iid = await mixed.start(process, **data)
        step = await people.wait_task(user, iid, spec)
        windows[iid] = [asked, time.time()]
        return iid, step

    approved, step_a = await start("invoice_approval", "approve_invoice", "bob")
    rejected, step_r = await start("invoice_approval", "approve_invoice", "carol")
    failing, step_f = await start("gives_up", "try_it", "alice", owner="alice", thing="it")
    await start("invoice_approval", "approve_invoice", "bob")  # still running at the end
    await asyncio.sleep(0.3)  # every ended instance lasts at least this long

    await people.complete("bob", step_a["id"], "approve")
    answer = await submit_step(step_r["url"], {"decision": "reject", "comment": "no"})
    assert answer.status_code == 303
    windows[failing].append(time.time())
    await people.complete("alice", step_f["id"])
    for iid, spec in ((approved, "tell_approved"), (rejected, "tell_rejected")):
        step = await people.wait_task("alice", iid, spec)
        windows[iid].append(time.time())
        await people.complete("alice", step["id"])
    for iid, status in ((approved, "completed"), (rejected, "completed"), (failing, "error")):
        await people.wait_process(iid, status)
        windows[iid].append(time.time())

    async def settled() -> list[dict[str, Any]] | None:
        async with mixed.client() as c:
            found: list[dict[str, Any]] = (await c.get("/instances")).json()["instances"]
        views = [await mixed.view(i["id"]) for i in found]
        return found if all(v["pending_calls"] == 0 for v in views) else None

    instances = await eventually(settled, what="the engine sent everything")
    theirs_ms: dict[str, int] = {}
    async with people.producer() as c:
        stats = (await c.get("/api/v1/processes/stats")).json()["processes"]
        by_name = {s["name"]: s for s in stats}
        for instance in instances:
            theirs = (await c.get(f"/api/v1/processes/{instance['id']}")).json()
            assert theirs["status"] == instance["status"]
            if instance["status"] == "running":
                assert theirs["duration_ms"] is None and instance["duration_ms"] is None
                continue
            asked, seen, last_sent, ended = windows[instance["id"]]
            shortest = (last_sent - seen) * 1000 - 2  # 2: the two sides round differently
            longest = (ended - asked) * 1000 + 2
            for ms in (theirs["duration_ms"], instance["duration_ms"]):
                assert shortest <= ms <= longest, (instance, theirs, windows[instance["id"]])
            theirs_ms[instance["id"]] = theirs["duration_ms"]
    ours: dict[str, Counter[str]] = {}
    for instance in instances:
        ours.setdefault(instance["name"], Counter())[instance["status"]] += 1
    for name, counts in ours.items():
        theirs_counts = by_name[name]["counts"]
        for status in ("running", "completed", "canceled", "error"):
            assert theirs_counts[status] == counts[status], (name, status)
    assert by_name["Invoice approval"]["counts"]["completed"] == 2
    assert by_name["Invoice approval"]["counts"]["running"] == 1
    assert by_name["Gives up"]["counts"]["error"] == 1
    # Taskbell's duration statistics are of the completed instances it measured.
    durations = by_name["Invoice approval"]["duration_ms"]
    completed = sorted(theirs_ms[i] for i in (approved, rejected))
    assert (durations["completed"], durations["max"]) == (2, completed[-1])
    assert by_name["Gives up"]["duration_ms"]["completed"] == 0


async def test_an_api_key_guards_the_instance_api(
    taskbell: Live, people: People, tmp_path: Path
) -> None:
    config = replace(engine_config(taskbell.base_url, tmp_path / "k.db"), api_key="engine-key")
    async with serve_engine(config) as guarded:
        async with httpx.AsyncClient(base_url=guarded.base_url, trust_env=False) as c:
            body = {"process": "invoice_approval"}
            assert (await c.post("/instances", json=body)).status_code == 401
            assert (await c.get("/instances")).status_code == 401
            assert (await c.get("/processes")).status_code == 401
            assert (await c.get("/healthz")).status_code == 200
        iid = await guarded.start("invoice_approval")  # its client sends the key
        step = await people.wait_task("bob", iid, "approve_invoice")
        # The step page and the webhook need no key: a signed link, a signed delivery.
        await people.complete("bob", step["id"], "approve")
        await people.wait_task("alice", iid, "tell_approved")
