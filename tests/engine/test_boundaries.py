"""Error boundaries, with a real engine and a real Taskbell: an error end event inside a
subprocess is caught by the subprocess's error boundary, so the subprocess's other open
step is canceled in Taskbell and the process goes on along the boundary's path; that path
can still fail the instance (an error end event), or complete it (the caught error does
not count as the instance's end)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.engine.support import EngineHandle, People, copy_samples, engine_config, serve_engine
from tests.support.app import Live

HERE = Path(__file__).resolve().parent


@pytest.fixture
async def caught(taskbell: Live, tmp_path: Path) -> AsyncIterator[EngineHandle]:
    folder = copy_samples(tmp_path / "bpmn")
    shutil.copy(HERE / "bpmn" / "caught_error.bpmn", folder / "caught_error.bpmn")
    async with serve_engine(engine_config(taskbell.base_url, tmp_path / "c.db", bpmn=folder)) as e:
        yield e


async def _problem_caught(engine: EngineHandle, people: People, thing: str) -> tuple[str, str]:
    """alice finds a problem in her check: bob's countercheck is canceled in Taskbell, and
    the boundary gives alice the fix (it follows her check). The instance and fix ids."""
    iid = await engine.start("caught_error", owner="alice", checker="bob", thing=thing)
    check = await people.wait_task("alice", iid, "check")
    countercheck = await people.wait_task("bob", iid, "countercheck")
    assert [a["id"] for a in check["actions"]] == ["ok", "problem"]
    await people.complete("alice", check["id"], "problem")

    fix = await people.wait_task("alice", iid, "fix")
    assert fix["title"] == f"Fix {thing}" and fix["follows"] == check["id"]
    assert (await people.task(countercheck["id"]))["status"] == "canceled"
    assert await people.running("bob") == []
    # A late completion of the canceled step is refused by Taskbell (it is final).
    assert (await people.try_complete("bob", countercheck["id"])).status_code == 409
    view = await engine.view(iid)
    assert view["status"] == "running"
    assert [(s["task"], s["status"]) for s in view["steps"]] == [
        ("check", "completed"),
        ("countercheck", "canceled"),
        ("fix", "open"),
    ]
    return iid, str(fix["id"])


async def test_a_caught_error_cancels_the_other_step_and_the_process_goes_on(
    caught: EngineHandle, people: People
) -> None:
    iid, fix = await _problem_caught(caught, people, "the order")
    await people.complete("alice", fix, "fixed")
    done = await people.wait_process(iid, "completed")
    assert [(s["id"].split(".")[1], s["status"]) for s in done["steps"]] == [
        ("check", "completed"),
        ("countercheck", "canceled"),
        ("fix", "completed"),
    ]
    view = await caught.view(iid)
    assert (view["status"], view["end_reason"]) == ("completed", None)


async def test_the_boundary_path_can_still_fail_the_instance(
    caught: EngineHandle, people: People
) -> None:
    iid, fix = await _problem_caught(caught, people, "the invoice")
    await people.complete("alice", fix, "give_up")
    failed = await people.wait_process(iid, "error")
    assert failed["duration_ms"] > 0
    view = await caught.view(iid)
    assert (view["status"], view["end_reason"]) == ("error", "error end event: Could not fix")


async def test_no_problem_completes_the_review(caught: EngineHandle, people: People) -> None:
    iid = await caught.start("caught_error", owner="alice", checker="bob", thing="the memo")
    check = await people.wait_task("alice", iid, "check")
    countercheck = await people.wait_task("bob", iid, "countercheck")
    await people.complete("alice", check["id"], "ok")
    await people.complete("bob", countercheck["id"])
    await people.wait_process(iid, "completed")
    assert [s["task"] for s in (await caught.view(iid))["steps"]] == ["check", "countercheck"]
