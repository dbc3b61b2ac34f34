"""The desktop bridge against a real session D-Bus with a recording notification
service: notify new tasks, close them when they leave, open the task on a click, and
keep its place across its own restarts and the server's."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.client import NOT_AUTHENTICATED
from bridge.state import BridgeState, Close, FeedState, Show
from server.errors import CloseCode
from tests.push.desktop import (
    BridgeProcess,
    Notifications,
    SessionBus,
    notification_service,
    session_bus,
)
from tests.support.app import PRODUCER_KEY, SECRET, Live, make_settings, serve, token
from tests.support.server_proc import ServerProcess
from tests.support.tasks import task_body


@pytest.fixture
def bus() -> Iterator[SessionBus]:
    with session_bus() as b:
        yield b


@pytest.fixture
async def desktop(bus: SessionBus) -> AsyncIterator[Notifications]:
    async with notification_service(bus) as service:
        yield service


def bridge_for(
    bus: SessionBus, url: str, tmp_path: Path, user: str = "alice", *, handoff_s: float = 1.0
) -> BridgeProcess:
    return BridgeProcess(
        bus,
        url,
        token(user),
        tmp_path / "state" / "bridge.json",
        tmp_path / "opened.txt",
        handoff_s=handoff_s,
    )


async def until(check: Any, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_new_task_is_notified_clicked_open_and_closed_when_done(
    embedded: Live, bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    bridge = bridge_for(bus, embedded.base_url, tmp_path)
    bridge.start()
    try:
        await until(lambda: embedded.parts.hub.connection_count == 1)
        async with embedded.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
            await c.post("/api/v1/tasks", json=task_body("b-1", "bob"))
        await desktop.wait(lambda: len(desktop.notified) == 1)
        note = desktop.notified[0]
        assert note.summary == "Approve t-1"
        assert note.body == "Invoice approval · Acme"
        assert note.actions[:2] == ["default", "Open task"]
        desktop.click(note.id)
        opened = tmp_path / "opened.txt"
        await until(lambda: opened.exists() and opened.read_text().strip() != "")
        assert opened.read_text().split() == ["https://crm.example/pages/approve?task=t-1"]
        async with embedded.person("alice") as c:
            await c.post("/api/v1/tasks/t-1/complete")
        await desktop.wait(lambda: desktop.closed == [note.id])
    finally:
        await bridge.stop()
    assert len(desktop.notified) == 1, bridge.log_text()


async def test_a_restarted_bridge_neither_repeats_nor_misses(
    embedded: Live, bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    async with embedded.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-0", "alice"))  # had before: no news
    bridge = bridge_for(bus, embedded.base_url, tmp_path)
    bridge.start()
    await until(lambda: embedded.parts.hub.connection_count == 1)
    async with embedded.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
    await desktop.wait(lambda: len(desktop.notified) == 1)
    first = desktop.notified[0].id
    await bridge.stop()
    assert bridge.child is not None and bridge.child.returncode == 0, bridge.log_text()
    assert BridgeState.load(bridge.state).seq == 2

    # while the bridge is down: a new task, and the notified one is completed
    async with embedded.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-2", "alice"))
        await c.post("/api/v1/tasks/t-1/complete")
    bridge.start()
    try:
        await desktop.wait(lambda: len(desktop.notified) == 2 and desktop.closed == [first])
        assert desktop.notified[1].summary == "Approve t-2"
        await until(lambda: BridgeState.load(bridge.state).seq == 4)
    finally:
        await bridge.stop()
    # and once more, with nothing new: nothing is shown again
    bridge.start()
    try:
        await until(lambda: embedded.parts.hub.connection_count == 1)
        await asyncio.sleep(0.3)
    finally:
        await bridge.stop()
    assert [n.summary for n in desktop.notified] == ["Approve t-1", "Approve t-2"]
    state = BridgeState.load(bridge.state)
    assert state.known == {"t-0", "t-2"} and set(state.shown) == {"t-2"}


async def test_a_queue_task_is_notified_to_members_and_stays_one_notification_when_claimed(
    embedded: Live, bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    async with embedded.producer() as c:
        put = await c.put("/api/v1/roles/approvers/members", json={"members": ["alice", "bob"]})
        assert put.status_code == 200, put.text
    bridge = bridge_for(bus, embedded.base_url, tmp_path)
    bridge.start()
    try:
        await until(lambda: embedded.parts.hub.connection_count == 1)
        queued = {**task_body("q-1", "alice"), "owner": None, "role": "approvers"}
        async with embedded.producer() as c:
            created = await c.post("/api/v1/tasks", json=queued)
            assert created.status_code == 201, created.text
        await desktop.wait(lambda: len(desktop.notified) == 1)
        assert desktop.notified[0].body.endswith("Queue: approvers")
        async with embedded.person("alice") as c:
            claimed = await c.post("/api/v1/tasks/q-1/claim")
            assert claimed.status_code == 200, claimed.text
        await until(lambda: "user:alice" in BridgeState.load(bridge.state).feeds)
        await asyncio.sleep(0.3)
        assert desktop.closed == [], "claimed by alice: still hers to do"
        async with embedded.person("alice") as c:
            await c.post("/api/v1/tasks/q-1/complete")
        await desktop.wait(lambda: desktop.closed == [desktop.notified[0].id])
    finally:
        await bridge.stop()


async def test_the_next_step_replaces_the_completed_steps_notification(
    embedded: Live, bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    """One notification that changes, not two: the step that ``follows`` a completed one
    takes its notification over; a completed step with no next one closes when the
    hand-off window ends."""
    bridge = bridge_for(bus, embedded.base_url, tmp_path, handoff_s=5.0)
    bridge.start()
    try:
        await until(lambda: embedded.parts.hub.connection_count == 1)
        async with embedded.producer() as c:
            made = await c.post(
                "/api/v1/processes",
                json={"id": "p-on", "name": "Onboarding", "expect_more": True},
            )
            assert made.status_code == 201, made.text
            process = {"instance_id": "p-on", "name": "Onboarding"}
            await c.post("/api/v1/tasks", json=task_body("s-1", "alice", process=process))
        await desktop.wait(lambda: len(desktop.notified) == 1)
        first = desktop.notified[0].id
        async with embedded.person("alice") as c:
            done = await c.post("/api/v1/tasks/s-1/complete")
            assert done.status_code == 200, done.text
        await until(lambda: "s-1" in BridgeState.load(bridge.state).handoff)
        assert desktop.closed == [], "the completed step waits for its next one"
        nxt = task_body("s-2", "alice", process=process, title="Send the contract")
        async with embedded.producer() as c:
            created = await c.post("/api/v1/tasks", json={**nxt, "follows": "s-1"})
            assert created.status_code == 201, created.text
        await desktop.wait(lambda: len(desktop.notified) == 2)
        second = desktop.notified[1]
        assert (second.id, second.replaces_id, second.summary) == (
            first,
            first,
            "Send the contract",
        )
        assert desktop.open.keys() == {first}
        await until(lambda: BridgeState.load(bridge.state).shown == {"s-2": first})
        assert BridgeState.load(bridge.state).handoff == {}
        await asyncio.sleep(5.5)
        assert desktop.closed == [], "the window's timer was canceled by the next step"

        async with embedded.person("alice") as c:
            await c.post("/api/v1/tasks/s-2/complete")
        await until(lambda: "s-2" in BridgeState.load(bridge.state).handoff)
        assert desktop.closed == []
        await desktop.wait(lambda: desktop.closed == [first], timeout=10)
        await until(lambda: BridgeState.load(bridge.state).handoff == {})
    finally:
        await bridge.stop()
    assert len(desktop.notified) == 2, bridge.log_text()


async def test_a_stopping_bridge_closes_the_notifications_that_wait_for_a_next_step(
    embedded: Live, bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    bridge = bridge_for(bus, embedded.base_url, tmp_path, handoff_s=60.0)
    bridge.start()
    try:
        await until(lambda: embedded.parts.hub.connection_count == 1)
        async with embedded.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("w-1", "alice"))
        await desktop.wait(lambda: len(desktop.notified) == 1)
        async with embedded.person("alice") as c:
            await c.post("/api/v1/tasks/w-1/complete")
        await until(lambda: "w-1" in BridgeState.load(bridge.state).handoff)
    finally:
        await bridge.stop()
    assert desktop.closed == [desktop.notified[0].id], bridge.log_text()
    assert BridgeState.load(bridge.state).handoff == {}


@pytest.mark.slow
async def test_the_bridge_rides_through_server_restarts_and_crashes(
    bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'taskbell.db'}",
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
    }
    server = ServerProcess(env)
    await asyncio.to_thread(server.start)
    bridge = bridge_for(bus, server.base_url, tmp_path)
    headers = {"Authorization": f"Bearer {PRODUCER_KEY}"}
    try:
        bridge.start()
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as c:
            await until(lambda: "snapshot" in bridge.log_text() or _connected(bridge))
            await asyncio.sleep(0.5)
            await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
            await desktop.wait(lambda: len(desktop.notified) == 1)
            await asyncio.to_thread(server.restart)  # graceful: sockets closed with 1012
            await c.post("/api/v1/tasks", json=task_body("t-2", "alice"))
            await desktop.wait(lambda: len(desktop.notified) == 2)
            await asyncio.to_thread(server.kill)  # a crash: the connection just drops
            await asyncio.to_thread(server.start)
            await c.post("/api/v1/tasks/t-2/complete")
            await desktop.wait(lambda: desktop.closed == [desktop.notified[1].id])
    finally:
        await bridge.stop()
        await asyncio.to_thread(server.close)
    assert [n.summary for n in desktop.notified] == ["Approve t-1", "Approve t-2"]


def _connected(bridge: BridgeProcess) -> bool:
    return BridgeState.load(bridge.state).primed


# ---------------------------------------------------------------- the pure rules


def _event(kind: str, seq: int, tid: str, count: int = 0) -> dict[str, Any]:
    return {"type": kind, "seq": seq, "count": count, "task": {"id": tid, "title": tid}}


def test_the_first_snapshot_only_primes() -> None:
    state = BridgeState()
    verdict, actions = state.apply(
        {"type": "snapshot", "seq": 3, "count": 1, "tasks": [{"id": "a"}]}
    )
    assert (verdict, actions, state.seq, state.known) == ("applied", [], 3, {"a"})


def alice(**feeds: int) -> BridgeState:
    """A primed state of alice's bridge at these seqs (``user_alice=4, role_a=2``)."""
    named = {k.replace("_", ":", 1): FeedState(v) for k, v in feeds.items()}
    return BridgeState(own="user:alice", feeds=named or {"user:alice": FeedState(0)}, primed=True)


def test_events_notify_update_and_close() -> None:
    state = alice(user_alice=1)
    _, actions = state.apply(_event("task.added", 2, "a"))
    assert actions == [Show({"id": "a", "title": "a"})]
    state.shown_as("a", 7)
    assert state.apply(_event("task.updated", 3, "a"))[1] == [
        Show({"id": "a", "title": "a"}, replaces=7)
    ]
    assert state.apply(_event("task.removed", 4, "a"))[1] == [Close("a", 7)]
    assert state.apply(_event("task.removed", 4, "a")) == ("ignored", [])
    assert state.apply(_event("task.added", 9, "b")) == ("gap", [])
    assert state.seq == 4


def test_a_completed_step_waits_for_the_step_that_follows_it() -> None:
    state = alice(user_alice=1)
    state.apply(_event("task.added", 2, "a"))
    state.shown_as("a", 7)
    done = {**_event("task.removed", 3, "a"), "reason": "completed"}
    assert state.apply(done)[1] == [Close("a", 7, after=10.0)]
    assert (state.shown, state.handoff) == ({}, {"a": 7})
    nxt = {**_event("task.added", 4, "b"), "task": {"id": "b", "title": "b", "follows": "a"}}
    assert state.apply(nxt)[1] == [Show({"id": "b", "title": "b", "follows": "a"}, replaces=7)]
    assert state.handoff == {}


def test_a_canceled_step_or_one_without_a_window_closes_at_once() -> None:
    state = alice(user_alice=1)
    state.apply(_event("task.added", 2, "a"))
    state.shown_as("a", 7)
    assert state.apply({**_event("task.removed", 3, "a"), "reason": "canceled"})[1] == [
        Close("a", 7)
    ]
    state.handoff_s = 0
    state.apply(_event("task.added", 4, "b"))
    state.shown_as("b", 8)
    assert state.apply({**_event("task.removed", 5, "b"), "reason": "completed"})[1] == [
        Close("b", 8)
    ]


def test_a_snapshot_closes_what_waited_for_a_next_step() -> None:
    state = alice()
    state.feeds["user:alice"] = FeedState(5, set())
    state.handoff = {"a": 3}
    _, actions = state.apply({"type": "snapshot", "seq": 6, "count": 0, "tasks": []})
    assert actions == [Close("a", 3)]
    assert state.handoff == {}


def test_a_later_snapshot_notifies_the_new_and_closes_the_gone() -> None:
    state = alice()
    state.feeds["user:alice"] = FeedState(5, {"a", "b"})
    state.shown = {"a": 1, "b": 2}
    snap = {"type": "snapshot", "seq": 9, "count": 2, "tasks": [{"id": "b"}, {"id": "c"}]}
    _, actions = state.apply(snap)
    assert actions == [Show({"id": "c"}), Close("a", 1)]
    assert state.seq == 9 and state.known == {"b", "c"}


def test_a_heartbeat_that_disagrees_asks_for_a_snapshot_that_repairs() -> None:
    state = alice()
    state.feeds["user:alice"] = FeedState(4, {"a"})
    state.shown = {"a": 3}
    agree = {"type": "ping", "feeds": {"user:alice": {"seq": 4, "count": 1}}}
    assert state.apply(agree) == ("ignored", [])
    other = {"type": "ping", "feeds": {"user:bob": {"seq": 9, "count": 5}}}
    assert state.apply(other) == ("ignored", []), "not this bridge's feed"
    wrong = {"type": "ping", "feeds": {"user:alice": {"seq": 4, "count": 2}}}
    assert state.apply(wrong) == ("resync", []) and state.resync
    snap = {"type": "snapshot", "seq": 4, "count": 2, "tasks": [{"id": "a"}, {"id": "b"}]}
    assert state.apply(snap)[1] == [Show({"id": "b"})]
    assert not state.resync and state.known == {"a", "b"}


async def test_a_wrong_state_file_is_repaired_by_the_next_heartbeat(
    sqlite_url: str, bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    """The state file says seq 1 with nothing running, but task t-1 is running: a
    replay from seq 1 brings nothing, the heartbeat says count 1, and the snapshot it
    asks for notifies t-1."""
    settings = dataclasses.replace(make_settings(sqlite_url), heartbeat_s=0.5)
    async with serve(settings) as live:
        async with live.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
        bridge = bridge_for(bus, live.base_url, tmp_path)
        alice(user_alice=1).save(bridge.state)
        bridge.start()
        try:
            await desktop.wait(lambda: len(desktop.notified) == 1)
        finally:
            await bridge.stop()
    assert desktop.notified[0].summary == "Approve t-1"
    assert BridgeState.load(bridge.state).known == {"t-1"}


def test_the_state_file_survives_a_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    state = alice(user_alice=4, role_approvers=7)
    state.feeds["user:alice"].known = {"a"}
    state.shown = {"a": 3}
    state.save(path)
    assert BridgeState.load(path) == state
    assert BridgeState.load(path, "user:alice") == state
    assert BridgeState.load(path, "user:bob") == BridgeState(own="user:bob"), "not bob's"
    path.write_text("{broken")
    assert BridgeState.load(path) == BridgeState()


def _in(feed: str, kind: str, seq: int, tid: str, count: int = 0, **task: Any) -> dict[str, Any]:
    return {
        **_event(kind, seq, tid, count),
        "feed": feed,
        "task": {"id": tid, "title": tid, **task},
    }


def test_each_feed_has_its_own_seq_and_an_event_without_feed_is_the_own_feeds() -> None:
    state = alice(user_alice=4, role_approvers=2, user_bob=9)
    assert state.apply(_in("role:approvers", "task.added", 3, "q"))[0] == "applied"
    assert state.apply(_in("user:bob", "task.added", 10, "b"))[0] == "applied"
    assert state.apply(_event("task.added", 5, "own"))[0] == "applied"  # no "feed"
    assert {n: f.seq for n, f in state.feeds.items()} == {
        "user:alice": 5,
        "role:approvers": 3,
        "user:bob": 10,
    }
    assert state.apply(_in("role:approvers", "task.added", 3, "q")) == ("ignored", [])
    assert state.apply(_in("role:approvers", "task.added", 5, "r")) == ("gap", [])
    assert state.apply(_in("role:strangers", "task.added", 1, "s")) == ("gap", []), "not followed"
    assert state.seq == 5 and state.since_feeds() == {"role:approvers": 3, "user:bob": 10}


def test_queue_tasks_are_notified_and_a_claimed_one_stays_shown_as_it_moves() -> None:
    state = alice(user_alice=4, role_approvers=2)
    queued: dict[str, Any] = {"owner": None, "role": "approvers"}
    _, actions = state.apply(_in("role:approvers", "task.added", 3, "q", **queued))
    assert actions == [Show({"id": "q", "title": "q", **queued})]  # type: ignore[typeddict-item]
    state.shown_as("q", 11)
    # Claimed by alice: it leaves the queue, then enters her own feed (either order).
    assert state.apply(
        {**_in("role:approvers", "task.removed", 4, "q", owner="alice"), "reason": "claimed"}
    ) == ("applied", []), "still alice's: the notification stays"
    _, actions = state.apply(_in("user:alice", "task.added", 5, "q", owner="alice"))
    assert actions == [Show({"id": "q", "title": "q", "owner": "alice"}, replaces=11)]
    # Claimed by someone else: it leaves the queue, and the notification closes.
    state.apply(_in("role:approvers", "task.added", 5, "r", **queued))
    state.shown_as("r", 12)
    taken = {**_in("role:approvers", "task.removed", 6, "r", owner="carol"), "reason": "claimed"}
    assert state.apply(taken) == (
        "applied",
        [Close("r", 12)],
    )


def test_a_joined_feed_notifies_its_tasks_and_a_left_one_closes_them() -> None:
    state = alice(user_alice=4)
    joined = {"type": "feed.joined", "feed": "user:bob", "seq": 7, "count": 2,
              "tasks": [{"id": "b1", "owner": "bob"}, {"id": "b2", "owner": "bob"}]}  # fmt: skip
    verdict, actions = state.apply(joined)
    assert verdict == "applied" and [a.task["id"] for a in actions if isinstance(a, Show)] == [
        "b1",
        "b2",
    ]
    state.shown_as("b1", 21)
    assert state.apply(_in("user:bob", "task.added", 8, "b3"))[0] == "applied"
    assert state.since_feeds() == {"user:bob": 8}
    assert state.apply({"type": "feed.left", "feed": "user:bob"}) == ("applied", [Close("b1", 21)])
    assert set(state.feeds) == {"user:alice"}
    assert state.apply({"type": "feed.left", "feed": "user:alice"}) == ("applied", []), "never"


def test_snapshots_heartbeats_and_synced_cover_every_feed() -> None:
    state = alice()
    beat = {"user:alice": {"seq": 3, "count": 1}, "role:approvers": {"seq": 5, "count": 1}}
    tasks = [{"id": "a", "owner": "alice"}, {"id": "q", "owner": None, "role": "approvers"}]
    snap = {"type": "snapshot", "seq": 3, "count": 1, "feeds": beat, "tasks": tasks}
    state.apply(snap)
    assert state.feeds == {
        "user:alice": FeedState(3, {"a"}),
        "role:approvers": FeedState(5, {"q"}),
    }
    assert state.apply({"type": "ping", "feeds": beat}) == ("ignored", [])
    wrong = {**beat, "role:approvers": {"seq": 5, "count": 2}}
    assert state.apply({"type": "ping", "feeds": wrong}) == ("resync", [])
    state.resync = False
    missing = {"user:alice": {"seq": 3, "count": 1}}
    assert state.apply({"type": "ping", "feeds": missing}) == ("resync", []), "a feed too many"

    # A replay that ends where it should; one that does not asks for a snapshot; a feed
    # synced no longer names was left while the bridge was away.
    state.shown_as("q", 5)
    synced = {
        "type": "synced",
        "seq": 3,
        "count": 1,
        "feeds": {"user:alice": {"seq": 3, "count": 1}},
    }
    assert state.apply(synced) == ("applied", [Close("q", 5)])
    assert set(state.feeds) == {"user:alice"}
    assert state.apply({**synced, "seq": 4, "feeds": {"user:alice": {"seq": 4}}})[0] == "resync"


def test_a_state_file_from_before_several_feeds_becomes_the_own_feed(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(
        '{"seq": 4, "primed": true, "known": ["a"], "shown": {"a": 3}, "resync": false}'
    )
    state = BridgeState.load(path, "user:alice")
    assert state.feeds == {"user:alice": FeedState(4, {"a"})} and state.shown == {"a": 3}
    assert state.seq == 4 and state.since_feeds() == {}


async def test_a_refused_token_ends_the_bridge_with_status_3(
    embedded: Live, bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    bridge = bridge_for(bus, embedded.base_url, tmp_path)
    bridge.argv[bridge.argv.index("--token") + 1] = "not-a-token"
    bridge.start()
    assert bridge.child is not None
    child = bridge.child
    await until(lambda: child.returncode is not None)
    assert child.returncode == 3
    assert "refuses the token" in bridge.log_text()


COMMANDS = {
    "python -m bridge": [sys.executable, "-m", "bridge"],
    "python -m server.bridge": [sys.executable, "-m", "server.bridge"],
    "taskbell-bridge": [str(Path(sys.executable).with_name("taskbell-bridge"))],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_name_of_the_bridge_runs_the_same_command(name: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TASKBELL_TOKEN"}
    argv = COMMANDS[name]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*argv, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    helped = run("--help")
    assert helped.returncode == 0, helped.stderr
    assert "Taskbell desktop notifications" in helped.stdout and "--token-file" in helped.stdout
    tokenless = run("--url", "http://127.0.0.1:9")
    assert tokenless.returncode == 2
    assert "a token is needed" in tokenless.stderr


def test_the_bridge_is_a_client_that_does_not_import_the_server() -> None:
    check = (
        "import sys, bridge.__main__; "
        "print(sorted(m for m in sys.modules if m == 'server' or m.startswith('server.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
    assert NOT_AUTHENTICATED == CloseCode.NOT_AUTHENTICATED, "its copy of the close code"


def _counted(message: dict[str, Any], postponed: int) -> dict[str, Any]:
    return {**message, "counts": {"running": message.get("count", 0), "postponed": postponed}}


def test_a_postponed_only_change_moves_the_count_and_closes_nothing() -> None:
    state = alice(user_alice=1)
    created = _counted(_event("task.removed", 2, "p", 0), 1)
    created["reason"], created["task"]["status"] = "created", "postponed"
    assert state.apply(created) == ("applied", [])
    assert (state.seq, state.known, state.postponed) == (2, set(), 1)


def test_snapshots_joins_and_synced_set_each_feeds_postponed_count() -> None:
    state = BridgeState(own="user:alice")
    state.apply(
        {
            "type": "snapshot",
            "seq": 3,
            "count": 0,
            "counts": {"running": 0, "postponed": 2},
            "feeds": {
                "user:alice": {"seq": 3, "count": 0, "counts": {"running": 0, "postponed": 2}}
            },
            "tasks": [],
        }
    )
    state.apply(
        {
            "type": "feed.joined",
            "feed": "role:a",
            "seq": 5,
            "count": 0,
            "counts": {"running": 0, "postponed": 1},
            "tasks": [],
        }
    )
    assert (state.feeds["user:alice"].postponed, state.postponed) == (2, 3)


def test_a_heartbeat_with_another_postponed_count_asks_for_a_snapshot() -> None:
    state = alice(user_alice=4)
    state.feeds["user:alice"].postponed = 1
    agrees = {"seq": 4, "count": 0, "counts": {"running": 0, "postponed": 1}}
    assert state.apply({"type": "ping", "feeds": {"user:alice": agrees}})[0] == "ignored"
    differs = {**agrees, "counts": {"running": 0, "postponed": 2}}
    assert state.apply({"type": "ping", "feeds": {"user:alice": differs}})[0] == "resync"


def test_the_postponed_count_survives_the_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = alice(user_alice=4)
    state.feeds["user:alice"].postponed = 3
    state.save(path)
    assert BridgeState.load(path).feeds["user:alice"].postponed == 3
