"""A connection follows several feeds (own, roles, stood-in-for people): joins, replay and
snapshot of all, per-feed order and gaps, refollow (feed.joined / feed.left), role feeds
with many members, heartbeats, and tenants kept apart. Over the in-memory feed log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from server.auth import User
from server.changes import Envelope
from server.errors import CloseCode
from server.feeds import role_key, user_key
from server.hub import Hub
from server.session import Session
from tests.support.feedlog import MemoryFeedLog, task_json
from tests.test_hub import Recorder

ALICE = user_key("default", "alice")
APPROVERS = role_key("default", "approvers")
BOTH = ["user:alice", "role:approvers"]


def person(name: str = "alice", tenant: str = "default") -> User:
    return User(name, time.time() + 3600, tenant=tenant)


def publish(hub: Hub, log: MemoryFeedLog, key: str, count: int = 1) -> int:
    seq, message = log.add(key, count)
    hub.on_envelope(Envelope(key, seq, count, message))
    return seq


def seqs_of(rec: Recorder, feed: str) -> list[int]:
    return [m["seq"] for m in rec.sent if m["type"].startswith("task.") and m["feed"] == feed]


def kinds(rec: Recorder) -> list[str]:
    return [m["type"] for m in rec.sent]


@asynccontextmanager
async def joined(
    hub: Hub, who: User, since: int | None = None, since_feeds: dict[str, int] | None = None
) -> AsyncIterator[tuple[Recorder, Session]]:
    rec = Recorder()
    async with hub.session(rec, who, since, since_feeds) as session:
        await rec.until(lambda: bool(rec.sent))
        yield rec, session


def following_both() -> tuple[MemoryFeedLog, Hub]:
    log = MemoryFeedLog()
    log.audiences[("default", "alice")] = list(BOTH)
    return log, Hub(log, sweep_interval=3600, queue_limit=64)


async def settle() -> None:
    """Let scheduled hub tasks (catch-ups, refollows) and writers run."""
    for _ in range(5):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


# ---------------------------------------------------------------- joining several feeds


async def test_a_connection_gets_every_followed_feeds_events_each_in_order() -> None:
    log, hub = following_both()
    async with joined(hub, person()) as (rec, _):
        snap = rec.sent[0]
        assert snap["type"] == "snapshot"
        assert snap["feeds"] == {
            "user:alice": {"seq": 0, "count": 0, "counts": {"running": 0, "postponed": 0}},
            "role:approvers": {"seq": 0, "count": 0, "counts": {"running": 0, "postponed": 0}},
        }
        for key in (ALICE, APPROVERS, APPROVERS, ALICE, APPROVERS):
            publish(hub, log, key)
        await rec.until(lambda: len(seqs_of(rec, "role:approvers")) == 3)
    assert seqs_of(rec, "user:alice") == [1, 2]
    assert seqs_of(rec, "role:approvers") == [1, 2, 3]


async def test_a_gap_in_one_feed_is_filled_without_disturbing_the_other() -> None:
    log, hub = following_both()
    async with joined(hub, person()) as (rec, _):
        publish(hub, log, APPROVERS)
        log.add(APPROVERS)  # seq 2 of the role: committed, its publish lost
        publish(hub, log, ALICE)
        publish(hub, log, APPROVERS)  # seq 3 shows the gap
        publish(hub, log, ALICE)
        await rec.until(lambda: len(seqs_of(rec, "role:approvers")) == 3)
        assert hub.feeds[ALICE].catch_up is None, "the own feed never needed the log"
    assert seqs_of(rec, "role:approvers") == [1, 2, 3]
    assert seqs_of(rec, "user:alice") == [1, 2]


async def test_since_and_since_feeds_replay_every_feed_then_synced() -> None:
    log, hub = following_both()
    for _ in range(3):
        log.add(ALICE)
    for _ in range(4):
        log.add(APPROVERS, count=2)
    async with joined(hub, person(), 1, {"role:approvers": 2}) as (rec, _):
        await rec.until(lambda: rec.sent[-1]["type"] == "synced")
        publish(hub, log, APPROVERS)
        await rec.until(lambda: seqs_of(rec, "role:approvers")[-1] == 5)
    assert kinds(rec)[:5] == ["task.added"] * 4 + ["synced"]
    assert seqs_of(rec, "user:alice") == [2, 3]
    assert seqs_of(rec, "role:approvers") == [3, 4, 5]
    assert rec.sent[4] == {
        "type": "synced",
        "seq": 3,
        "count": 1,
        "counts": {"running": 1, "postponed": 0},
        "feeds": {
            "user:alice": {"seq": 3, "count": 1, "counts": {"running": 1, "postponed": 0}},
            "role:approvers": {"seq": 4, "count": 2, "counts": {"running": 2, "postponed": 0}},
        },
    }


async def test_one_feed_not_replayable_gives_one_snapshot_of_all() -> None:
    log, hub = following_both()
    log.add(ALICE)
    log.add(APPROVERS)
    log.tasks[ALICE] = [task_json("mine")]
    log.tasks[APPROVERS] = [task_json("queued", owner=None)]
    # The own feed could be replayed; the role is not named in since_feeds.
    async with joined(hub, person(), 0) as (rec, _):
        pass
    assert len(rec.sent) == 1
    snap = rec.sent[0]
    assert snap["type"] == "snapshot" and (snap["seq"], snap["count"]) == (1, 1)
    assert snap["feeds"] == {
        "user:alice": {"seq": 1, "count": 1, "counts": {"running": 1, "postponed": 0}},
        "role:approvers": {"seq": 1, "count": 1, "counts": {"running": 1, "postponed": 0}},
    }
    assert [t["id"] for t in snap["tasks"]] == ["mine", "queued"]


async def test_a_feed_whose_events_are_gone_gives_a_snapshot_of_all() -> None:
    log, hub = following_both()
    log.replay_limit = 2
    for _ in range(5):
        log.add(APPROVERS)
    async with joined(hub, person(), 0, {"role:approvers": 1}) as (rec, _):
        pass
    assert kinds(rec) == ["snapshot"]
    assert rec.sent[0]["feeds"]["role:approvers"] == {
        "seq": 5,
        "count": 1,
        "counts": {"running": 1, "postponed": 0},
    }


async def test_since_feeds_naming_a_feed_not_followed_is_ignored() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600)
    log.add(ALICE)
    async with joined(hub, person(), 1, {"role:strangers": 3, "user:alice": 99}) as (rec, _):
        pass
    assert rec.sent == [
        {
            "type": "synced",
            "seq": 1,
            "count": 1,
            "counts": {"running": 1, "postponed": 0},
            "feeds": {
                "user:alice": {"seq": 1, "count": 1, "counts": {"running": 1, "postponed": 0}}
            },
        }
    ]
    assert set(log.resumes) == {ALICE}


async def test_the_own_feed_is_followed_even_when_the_audience_omits_it() -> None:
    log = MemoryFeedLog()
    log.audiences[("default", "alice")] = ["role:approvers"]
    hub = Hub(log, sweep_interval=3600)
    async with joined(hub, person()) as (rec, _):
        assert list(rec.sent[0]["feeds"]) == BOTH


# ---------------------------------------------------------------- refollow


async def test_refollow_joins_a_new_feed_with_its_tasks_then_only_later_events() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600)
    async with joined(hub, person()) as (rec, _):
        publish(hub, log, APPROVERS)  # not followed yet: dropped
        publish(hub, log, APPROVERS)
        log.tasks[APPROVERS] = [task_json("q1", owner=None), task_json("q2", owner=None)]
        log.audiences[("default", "alice")] = list(BOTH)
        hub.refollow("default", "alice")
        await rec.until(lambda: rec.sent[-1]["type"] == "feed.joined")
        publish(hub, log, APPROVERS)
        await rec.until(lambda: bool(seqs_of(rec, "role:approvers")))
    joined_msg = rec.sent[1]
    assert joined_msg["type"] == "feed.joined" and joined_msg["feed"] == "role:approvers"
    assert (joined_msg["seq"], joined_msg["count"]) == (2, 1)
    assert [t["id"] for t in joined_msg["tasks"]] == ["q1", "q2"]
    assert seqs_of(rec, "role:approvers") == [3]


async def test_refollow_leaves_a_feed_and_nothing_of_it_comes_after() -> None:
    log, hub = following_both()
    async with joined(hub, person()) as (rec, _):
        publish(hub, log, APPROVERS)
        await rec.until(lambda: bool(seqs_of(rec, "role:approvers")))
        log.audiences[("default", "alice")] = ["user:alice"]
        hub.refollow("default", "alice")
        await rec.until(lambda: rec.sent[-1]["type"] == "feed.left")
        assert APPROVERS not in hub.feeds, "nobody here follows the role any more"
        publish(hub, log, APPROVERS)
        publish(hub, log, ALICE)
        await rec.until(lambda: bool(seqs_of(rec, "user:alice")))
    assert rec.sent[2] == {"type": "feed.left", "feed": "role:approvers"}
    assert seqs_of(rec, "role:approvers") == [1]


async def test_refollow_again_sends_nothing_new_and_concurrent_calls_fold() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600)
    async with joined(hub, person()) as (rec, _):
        log.audiences[("default", "alice")] = list(BOTH)
        reads = log.reads
        for _ in range(5):
            hub.refollow("default", "alice")
        await rec.until(lambda: rec.sent[-1]["type"] == "feed.joined")
        await settle()
        assert log.reads - reads <= 4, "five calls: at most two rounds (audience + view)"
        before, reads = list(rec.sent), log.reads
        hub.refollow("default", "alice")
        hub.refollow("default", "alice")
        await settle()
        assert rec.sent == before
        assert set(log.resumes) == {ALICE, APPROVERS} and log.resumes[APPROVERS] == 1
        assert log.reads - reads <= 2, "nothing changed: only the audience is read"
    assert kinds(rec).count("feed.joined") == 1


async def test_refollow_reaches_every_connection_of_that_user_only() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600)
    async with (
        joined(hub, person()) as (tab1, _),
        joined(hub, person()) as (tab2, _),
        joined(hub, person("bob")) as (bob, _),
    ):
        log.audiences[("default", "alice")] = list(BOTH)
        log.audiences[("default", "bob")] = list(BOTH)  # changed, but nobody said so
        hub.refollow("default", "alice")
        await tab1.until(lambda: tab1.sent[-1]["type"] == "feed.joined")
        await tab2.until(lambda: tab2.sent[-1]["type"] == "feed.joined")
        await settle()
    assert kinds(bob) == ["snapshot"]


async def test_refollow_of_someone_not_connected_here_does_nothing() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600)
    hub.refollow("default", "nobody")
    await settle()
    assert log.reads == 0 and hub.users == {}


# ---------------------------------------------------------------- many members, one feed


class RawSender:
    """A ``Sender`` that keeps the very strings it is handed."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_text(self, data: str) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


async def test_a_role_with_1000_members_online_gets_one_event_each_from_one_offer() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600, queue_limit=64)
    members = [f"u{i}" for i in range(1000)]
    for m in members:
        log.audiences[("default", m)] = [f"user:{m}", "role:approvers"]
    senders = {m: RawSender() for m in members}
    async with AsyncExitStack() as stack:
        for m in members:
            await stack.enter_async_context(hub.session(senders[m], person(m), None))
        await settle()
        assert len(hub.feeds[APPROVERS].conns) == 1000
        for s in senders.values():
            s.sent.clear()
        reads = log.reads
        seq, message = log.add(APPROVERS)
        hub.on_envelope(Envelope(APPROVERS, seq, 1, message))
        await settle()
        assert log.reads == reads, "a delivered event reads nothing"
        assert all(s.sent == [message] for s in senders.values())
        assert len({id(s.sent[0]) for s in senders.values()}) == 1, "one string, fanned out"
        # A gap: one read of the log for all 1000 members.
        for s in senders.values():
            s.sent.clear()
        log.add(APPROVERS)  # publish lost
        seq, message = log.add(APPROVERS)
        hub.on_envelope(Envelope(APPROVERS, seq, 1, message))
        await settle()
        assert log.reads == reads + 1
        assert all(len(s.sent) == 2 for s in senders.values())


# ---------------------------------------------------------------- heartbeats, tenants


async def test_the_heartbeat_carries_every_followed_feed_as_this_connection_was_given_it() -> None:
    log, hub = following_both()
    async with joined(hub, person()) as (rec, _):
        publish(hub, log, ALICE)
        publish(hub, log, APPROVERS, count=4)
        publish(hub, log, APPROVERS, count=5)
        await rec.until(lambda: len(seqs_of(rec, "role:approvers")) == 2)
        hub.heartbeat()
        await rec.until(lambda: rec.sent[-1]["type"] == "ping")
    assert rec.sent[-1] == {
        "type": "ping",
        "feeds": {
            "user:alice": {"seq": 1, "count": 1, "counts": {"running": 1, "postponed": 0}},
            "role:approvers": {"seq": 2, "count": 5, "counts": {"running": 5, "postponed": 0}},
        },
    }


async def test_close_user_closes_that_person_in_that_tenant_only() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600)
    async with (
        joined(hub, person("alice", "acme")) as (acme, acme_session),
        joined(hub, person("alice")) as (default, default_session),
    ):
        hub.close_user("acme", "alice", CloseCode.NOT_AUTHENTICATED, "revoked")
        await acme.until(lambda: acme.closed is not None)
        await settle()
        assert acme.closed == (CloseCode.NOT_AUTHENTICATED, "revoked")
        assert default.closed is None and default_session.open
        assert not acme_session.open


async def test_events_of_one_tenants_feeds_never_reach_another_tenants_connection() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600)
    for tenant in ("default", "acme"):
        log.audiences[(tenant, "alice")] = list(BOTH)
    async with (
        joined(hub, person("alice", "acme")) as (acme, _),
        joined(hub, person("alice")) as (default, _),
    ):
        publish(hub, log, ALICE)
        publish(hub, log, APPROVERS)
        publish(hub, log, role_key("acme", "approvers"))
        await default.until(lambda: len(default.sent) == 3)
        await acme.until(lambda: len(acme.sent) == 2)
        await settle()
    assert [(m["feed"], m["seq"]) for m in default.sent[1:]] == [
        ("user:alice", 1),
        ("role:approvers", 1),
    ]
    assert [(m["feed"], m["seq"]) for m in acme.sent[1:]] == [("role:approvers", 1)]
    assert set(log.resumes) == {ALICE, APPROVERS, user_key("acme", "alice"), "acme/role:approvers"}


class Interests:
    def __init__(self) -> None:
        self.held: list[str] = []

    def hold(self, key: str) -> None:
        self.held.append(key)

    def release(self, key: str) -> None:
        self.held.remove(key)


async def test_the_broker_is_told_every_followed_feed_and_let_go_of_them_on_leaving() -> None:
    log = MemoryFeedLog()
    log.audiences[("default", "alice")] = list(BOTH)
    interest = Interests()
    hub = Hub(log, sweep_interval=3600, interest=interest)
    async with joined(hub, person()) as _, joined(hub, person()) as _:
        assert sorted(interest.held) == sorted([ALICE, APPROVERS])
    assert interest.held == [] and hub.feeds == {} and hub.users == {}


async def test_an_audience_changed_while_joining_is_followed_once_joined() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600)
    rec = Recorder()
    log.hold = asyncio.Event()
    joining = asyncio.create_task(hub.session(rec, person(), None).__aenter__())
    await asyncio.sleep(0.01)  # the audience (own feed only) is read, the view held
    log.audiences[("default", "alice")] = list(BOTH)
    hub.refollow("default", "alice")  # nobody joined yet to refollow
    log.hold.set()
    session = await joining
    await rec.until(lambda: rec.sent[-1]["type"] == "feed.joined")
    assert kinds(rec) == ["snapshot", "feed.joined"]
    await session.__aexit__(None, None, None)


async def test_a_token_of_the_same_id_in_another_tenant_does_not_refresh() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600)
    async with joined(hub, person()) as (rec, session):
        assert session.refresh(person())
        assert not session.refresh(person("alice", "acme"))
    assert rec.closed == (CloseCode.BAD_MESSAGE, "a connection belongs to one user")


async def test_a_view_newer_than_what_a_feed_delivered_gets_none_of_it_again() -> None:
    log, hub = following_both()
    async with joined(hub, person()) as (first, _):
        log.add(APPROVERS)  # committed; their publishes are late
        log.add(APPROVERS)
        async with joined(hub, person()) as (second, _):
            assert second.sent[0]["feeds"]["role:approvers"]["seq"] == 2
            publish(hub, log, ALICE)
            publish(hub, log, APPROVERS)  # seq 3: the role's gap is read for `first`
            await first.until(lambda: len(seqs_of(first, "role:approvers")) == 3)
            await second.until(lambda: bool(seqs_of(second, "role:approvers")))
            await settle()
    assert seqs_of(first, "role:approvers") == [1, 2, 3]
    assert seqs_of(second, "role:approvers") == [3], "1 and 2 were in its snapshot"
    assert seqs_of(second, "user:alice") == [1]


async def test_refollow_sends_feed_joined_only_to_connections_missing_the_feed() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600)
    async with joined(hub, person()) as (old, _):
        log.audiences[("default", "alice")] = list(BOTH)
        async with joined(hub, person()) as (new, _):  # read the new audience itself
            assert list(new.sent[0]["feeds"]) == BOTH
            hub.refollow("default", "alice")
            await old.until(lambda: old.sent[-1]["type"] == "feed.joined")
            await settle()
    assert kinds(new) == ["snapshot"]


async def test_a_refollow_the_database_refused_is_done_by_the_next_call() -> None:
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=3600)
    async with joined(hub, person()) as (rec, session):
        log.audiences[("default", "alice")] = list(BOTH)
        log.fail = ConnectionRefusedError("down")
        hub.refollow("default", "alice")
        await settle()
        assert kinds(rec) == ["snapshot"] and session.open and set(hub.feeds) == {ALICE}
        log.fail = None
        hub.refollow("default", "alice")
        await rec.until(lambda: rec.sent[-1]["type"] == "feed.joined")


async def test_a_join_that_needs_a_snapshot_reads_each_feed_once() -> None:
    log, hub = following_both()
    log.add(APPROVERS)
    async with joined(hub, person(), None, {"role:approvers": 0}) as (rec, _):
        pass
    assert kinds(rec) == ["snapshot"]
    assert log.resumes == {ALICE: 1, APPROVERS: 1}


async def test_a_refollow_the_database_refused_is_done_again_by_the_sweep() -> None:
    # The audience log asks once per change: a refused read must not be forgotten.
    log = MemoryFeedLog()
    hub = Hub(log, sweep_interval=0.1)
    hub.start()
    try:
        async with joined(hub, person()) as (rec, _):
            log.audiences[("default", "alice")] = list(BOTH)
            log.fail = ConnectionRefusedError("down")
            hub.refollow("default", "alice")
            await settle()
            assert kinds(rec) == ["snapshot"]
            log.fail = None  # nobody calls refollow again
            await rec.until(lambda: rec.sent[-1]["type"] == "feed.joined")
    finally:
        await hub.stop()
