"""The chaos mix, shared by the chaos test and the soak benchmark (bench/soak.py).

- ``ResumingClient``: one panel tab that never gives up. It follows every feed of its
  socket (the own feed, role queues, people stood in for) and applies each with the
  contract's checks (contiguous seqs per feed, ``count == len(tasks)`` on every
  message, no seq applied twice, no snapshot or ``feed.joined`` going back, no event of
  a feed not followed, heartbeats equal to what it holds); on a seq gap, any close or a
  connection error it reconnects to another instance with ``since`` and
  ``since_feeds``.
- ``Workload``: producer and person operations over HTTP (batches, single calls, owner
  and member calls, claims, two members racing to claim one task through two
  instances, unclaims, process cancels, role memberships changing, substitutions
  starting and ending) spread over every instance, retried elsewhere when an instance
  is away, with every acknowledged result remembered. One per tenant.
- ``compare`` / ``check_writes``: each client against the database's audit
  (``audit.py``), and every acknowledged write against what the database kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.faults.audit import Audit, OwnerTruth, audit_url, name_of
from tests.support.server_proc import ServerProcess
from tests.support.services import RedisServer

FINAL = ("completed", "canceled")
FAR_FUTURE = "2099-01-01T00:00:00Z"
DEFAULT_TENANT = "default"


class Violation(AssertionError):
    """Something a client saw breaks the feed contract."""


class SeqGap(Exception):
    """A feed's next event skipped a seq: the client reconnects with ``since``."""


# ---------------------------------------------------------------------- clients


def feed_of_task(task: Mapping[str, Any]) -> str:
    """The feed a running task is in: its owner's, else its role's queue."""
    if task.get("owner") is not None:
        return f"user:{task['owner']}"
    return f"role:{task.get('role')}"


@dataclass
class FeedPos:
    """One followed feed as the tab shows it."""

    seq: int
    count: int
    tasks: set[str]
    postponed: int = 0  # the counts.postponed that came with ``seq``


@dataclass
class FeedView:
    """What one tab shows, kept across its reconnections: every feed it follows."""

    own: str = ""  # "user:<id>"
    feeds: dict[str, FeedPos] = field(default_factory=dict)
    # feed -> seq -> (type, task id, count) of every event applied, to compare with the
    # database (feeds left keep theirs)
    applied: dict[str, dict[int, tuple[str, str, int]]] = field(default_factory=dict)
    # feed -> [start, end] of each stretch it was followed: events start+1..end applied
    spans: dict[str, list[list[int]]] = field(default_factory=dict)
    high: dict[str, int] = field(default_factory=dict)  # highest seq ever held per feed
    snapshots: int = 0
    joined: int = 0
    left: int = 0
    connected_once: bool = False

    @property
    def seq(self) -> int:
        pos = self.feeds.get(self.own)
        return pos.seq if pos is not None else 0

    @property
    def count(self) -> int:
        pos = self.feeds.get(self.own)
        return pos.count if pos is not None else 0

    @property
    def tasks(self) -> set[str]:
        pos = self.feeds.get(self.own)
        return pos.tasks if pos is not None else set()

    def _start(
        self, feed: str, seq: int, count: int, tasks: set[str], what: str, postponed: int
    ) -> None:
        if seq < self.high.get(feed, 0):
            raise Violation(f"{what} of {feed} went back from {self.high[feed]} to {seq}")
        if len(tasks) != count:
            raise Violation(f"{what} of {feed}: count {count} with {len(tasks)} tasks")
        self.feeds[feed] = FeedPos(seq, count, tasks, postponed)
        self.high[feed] = seq
        self.spans.setdefault(feed, []).append([seq, seq])

    def _stop(self, feed: str) -> None:
        del self.feeds[feed]

    def apply(self, msg: dict[str, Any]) -> None:
        """Apply one server message; raises ``Violation`` when it breaks the contract,
        ``SeqGap`` when a feed skipped a seq (nothing is applied then)."""
        kind = msg["type"]
        _check_counts(msg)
        if kind == "snapshot":
            positions = msg["feeds"]
            if next(iter(positions), None) != self.own:
                raise Violation(f"snapshot feeds {list(positions)} do not start with {self.own}")
            if (msg["seq"], msg["count"]) != (
                positions[self.own]["seq"],
                positions[self.own]["count"],
            ):
                raise Violation("snapshot's top-level seq/count are not the own feed's")
            grouped: dict[str, set[str]] = {f: set() for f in positions}
            for t in msg["tasks"]:
                f = feed_of_task(t)
                if f not in grouped:
                    raise Violation(f"snapshot task {t['id']} of {f}, a feed not listed")
                grouped[f].add(t["id"])
            self.snapshots += 1
            for f in list(self.feeds):
                self._stop(f)
            for f, pos in positions.items():
                postponed = pos["counts"]["postponed"]
                self._start(f, pos["seq"], pos["count"], grouped[f], "snapshot", postponed)
        elif kind == "synced":
            positions = msg["feeds"]
            if (msg["seq"], msg["count"]) != (
                positions[self.own]["seq"],
                positions[self.own]["count"],
            ):
                raise Violation("synced's top-level seq/count are not the own feed's")
            for f, pos in positions.items():
                mine = self.feeds.get(f)
                if mine is None:
                    raise Violation(f"synced names {f}, a feed not resumed")
                if (pos["seq"], pos["count"]) != (mine.seq, mine.count):
                    raise Violation(
                        f"synced {f} {pos['seq']}/{pos['count']} at {mine.seq}/{mine.count}"
                    )
                if pos["counts"]["postponed"] != mine.postponed:
                    raise Violation(f"synced {f} postponed {pos['counts']} at {mine.postponed}")
            for f in [f for f in self.feeds if f not in positions]:
                self._stop(f)  # no longer followed: left while away
                self.left += 1
        elif kind in ("task.added", "task.updated", "task.removed"):
            feed, seq = msg["feed"], msg["seq"]
            pos = self.feeds.get(feed)
            if pos is None:
                raise Violation(f"{kind} of {feed} (seq {seq}), a feed not followed")
            applied = self.applied.setdefault(feed, {})
            if seq in applied:
                raise Violation(f"{feed}: seq {seq} applied twice")
            if seq <= pos.seq:
                raise Violation(f"{feed}: repeat {pos.seq} -> {seq}")
            if seq != pos.seq + 1:
                raise SeqGap(f"{feed}: gap {pos.seq} -> {seq}")
            task = msg["task"]
            if kind == "task.removed":
                pos.tasks.discard(task["id"])
            else:
                if feed_of_task(task) != feed:
                    raise Violation(f"{kind} in {feed} of a task of {feed_of_task(task)}")
                pos.tasks.add(task["id"])
            pos.seq, pos.count = seq, msg["count"]
            pos.postponed = msg["counts"]["postponed"]
            self.high[feed] = seq
            self.spans[feed][-1][1] = seq
            applied[seq] = (kind, task["id"], pos.count)
            if len(pos.tasks) != pos.count:
                raise Violation(f"{feed}: count {pos.count} with {len(pos.tasks)} tasks at {seq}")
        elif kind == "feed.joined":
            feed = msg["feed"]
            if feed in self.feeds:
                raise Violation(f"feed.joined {feed}, already followed")
            tasks = set()
            for t in msg["tasks"]:
                if feed_of_task(t) != feed:
                    raise Violation(f"feed.joined {feed} with a task of {feed_of_task(t)}")
                tasks.add(t["id"])
            self.joined += 1
            postponed = msg["counts"]["postponed"]
            self._start(feed, msg["seq"], msg["count"], tasks, "feed.joined", postponed)
        elif kind == "feed.left":
            feed = msg["feed"]
            if feed not in self.feeds:
                raise Violation(f"feed.left {feed}, not followed")
            if feed == self.own:
                raise Violation("the own feed was left")
            self.left += 1
            self._stop(feed)
        elif kind == "ping":
            held = {
                f: {
                    "seq": p.seq,
                    "count": p.count,
                    "counts": {"running": p.count, "postponed": p.postponed},
                }
                for f, p in self.feeds.items()
            }
            if msg["feeds"] != held:
                raise Violation(f"heartbeat {msg['feeds']} while holding {held}")
        elif kind != "pong":
            raise Violation(f"unknown message type {kind!r}")


def _check_counts(msg: dict[str, Any]) -> None:
    """Every message and feed position with a ``count`` carries ``counts`` whose
    ``running`` is that count (docs/protocol.md, "Live counts")."""
    feeds = msg.get("feeds")
    for pos in [msg, *(feeds.values() if isinstance(feeds, dict) else ())]:
        if "count" in pos:
            counts = pos.get("counts")
            if not isinstance(counts, dict) or counts.get("running") != pos["count"]:
                raise Violation(f"{msg.get('type')}: counts {counts} with count {pos['count']}")
            if not isinstance(counts.get("postponed"), int) or counts["postponed"] < 0:
                raise Violation(f"{msg.get('type')}: counts {counts}")


class ResumingClient:
    """A tab of ``owner`` (in ``tenant``) that reconnects with ``since`` and
    ``since_feeds`` to the next instance whenever its socket ends, until ``stop()``."""

    def __init__(
        self,
        owner: str,
        token: str,
        ws_urls: Sequence[str],
        first: int,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        self.owner = owner
        self.tenant = tenant
        self.token = token
        self.ws_urls = list(ws_urls)
        self.index = first
        self._rng = random.Random(f"{tenant}/{owner}/{first}")
        self.view = FeedView(own=f"user:{owner}")
        self.closes: Counter[str] = Counter()
        self.violation: str | None = None
        self.connections = 0
        self.gaps = 0
        # snapshots answering a resume that named every feed followed (a replay was due)
        self.needless_snapshots = 0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._progress = asyncio.Event()
        self._connected = asyncio.Event()

    @property
    def name(self) -> str:
        return self.owner if self.tenant == DEFAULT_TENANT else f"{self.tenant}/{self.owner}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"client:{self.name}")

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()`` (or the client broke); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done() and self.violation is None:
            self._progress.clear()
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(left, 0.5))
        return done()

    async def wait_seq(self, seq: int, timeout: float) -> bool:
        """Wait until the own feed reached ``seq`` (or broke); False on timeout."""
        return await self.wait_for(lambda: self.view.seq >= seq, timeout)

    def agrees(self, truth: Audit) -> bool:
        """Follows exactly the feeds the database says, each at least at its seq."""
        feeds = truth.feeds_of(self.tenant, self.owner)
        if set(self.view.feeds) != set(feeds):
            return False
        for f, pos in self.view.feeds.items():
            t = truth.owners.get(name_of(self.tenant, f))
            if pos.seq < (t.seq if t else 0):
                return False
        return True

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = 0.05
        while not self._stopping:
            url = self.ws_urls[self.index % len(self.ws_urls)]
            try:
                await self._session(url)
                backoff = 0.05
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else "1006 (no close frame)"
                self.closes[str(code)] += 1
                backoff = 0.05
            except SeqGap:
                self.gaps += 1
                self.closes["seq gap"] += 1
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self.closes[f"connect: {type(exc).__name__}"] += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            except Violation as exc:
                self.violation = f"{self.name} via {url}: {exc}"
                self._progress.set()
                return
            finally:
                self._ws = None
            # Another instance next time, as a load balancer would pick.
            self.index += self._rng.randrange(1, len(self.ws_urls)) if len(self.ws_urls) > 1 else 0

    async def _session(self, url: str) -> None:
        async with connect(url, open_timeout=5, close_timeout=2, max_size=None) as ws:
            self._ws = ws
            auth: dict[str, Any] = {"type": "auth", "token": self.token}
            view = self.view
            resumed = view.connected_once
            named = set(view.feeds)
            if resumed:
                auth["since"] = view.seq
                others = {f: p.seq for f, p in view.feeds.items() if f != view.own}
                if others:
                    auth["since_feeds"] = others
            await ws.send(orjson.dumps(auth).decode())
            self.connections += 1
            first = True
            async for raw in ws:
                msg = orjson.loads(raw)
                if first and resumed and msg["type"] == "snapshot" and set(msg["feeds"]) <= named:
                    self.needless_snapshots += 1
                if msg["type"] in ("snapshot", "synced"):
                    first = False
                view.apply(msg)
                if msg["type"] in ("snapshot", "synced"):
                    view.connected_once = True
                    self._connected.set()
                self._progress.set()


# ---------------------------------------------------------------------- workload


@dataclass(frozen=True)
class RoleSpec:
    """A role queue of the mix: ``core`` members are in it throughout (they act on its
    tasks, claim them and race for them); ``floaters`` come and go while the load runs."""

    core: tuple[str, ...]
    floaters: tuple[str, ...] = ()


@dataclass
class Model:
    owner: str | None
    status: str
    instance: str | None
    role: str | None = None
    raced: bool = False  # two members already raced to claim it


@dataclass
class Race:
    """Two members claiming one queue task at once, through two instances."""

    task: str  # as in ``Audit.statuses``
    answers: list[tuple[str, int, str]]  # (claimer, status code or 0, error code)


@dataclass
class WorkloadFigures:
    ops: int = 0
    requests: int = 0
    ops_by_code: Counter[str] = field(default_factory=Counter)
    ops_by_kind: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)  # "<kind> <code>"
    requests_by_kind: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    def add(self, other: WorkloadFigures) -> None:
        self.ops += other.ops
        self.requests += other.requests
        for mine, theirs in (
            (self.ops_by_code, other.ops_by_code),
            (self.ops_by_kind, other.ops_by_kind),
            (self.answers, other.answers),
            (self.requests_by_kind, other.requests_by_kind),
            (self.retries, other.retries),
        ):
            mine.update(theirs)
        self.unexpected += other.unexpected


EXPECTED_CODES = {200, 201, 404, 409}
MODEL_LIMIT = 2000  # tasks a worker keeps in mind; long soaks forget finished ones
CLAIMS = ("claim", "claim race", "producer claim")


def _forget_finished(tasks: dict[str, Model], instances: dict[str, set[str]]) -> None:
    """Keep the open tasks and the 200 newest finished ones (to act on final tasks)."""
    finished = [t for t, m in tasks.items() if m.status in FINAL]
    for tid in finished[:-200]:
        del tasks[tid]
    for iid in [i for i, ids in instances.items() if not any(t in tasks for t in ids)]:
        del instances[iid]


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


class Workload:
    """``total`` random operations by ``workers`` concurrent producers of ``tenant``,
    paced to last about ``duration_s``, over the instances at ``base_urls`` (any of
    which may be away for a while: a call then goes to another one).

    With ``roles``, a share of the tasks is offered to role queues (claimed, raced for,
    unclaimed, acted on by members) while a driver changes each role's floating
    members; with ``absences`` (``(user, substitute)`` pairs) the first substitution
    starts and ends on the server's clock during the run, the second is in force from
    its creation until it is deleted."""

    def __init__(
        self,
        base_urls: Sequence[str],
        owners: Sequence[str],
        *,
        producer_key: str,
        token: Callable[[str], str],
        total: int,
        duration_s: float,
        workers: int = 5,
        seed: int = 1,
        prefix: str = "",
        tenant: str = DEFAULT_TENANT,
        roles: Mapping[str, RoleSpec] | None = None,
        absences: Sequence[tuple[str, str]] = (),
        role_share: float = 0.3,
    ) -> None:
        self.base_urls = list(base_urls)
        self.owners = list(owners)
        self.producer_key = producer_key
        self.token = token
        self.total = total
        self.duration_s = duration_s
        self.workers = workers
        self.seed = seed
        self.prefix = prefix  # of task and process ids, for several workloads on one database
        self.tenant = tenant
        self.roles = dict(roles or {})
        self.absences = list(absences)
        self.role_share = role_share if self.roles else 0.0
        self.figures = WorkloadFigures()
        self.acked: dict[str, str] = {}  # task id (as in Audit.statuses) -> its last 2xx status
        self.claimed: dict[str, str] = {}  # task id -> who its last acked claim made owner
        self.races: list[Race] = []
        self.members_acked: dict[str, set[str] | None] = {}  # role -> last PUT (None: unknown)
        self.substitutions_acked: dict[str, str] = {}  # id -> "ended" | "deleted"
        self._standins: list[list[Any]] = []  # [absent, substitute, from, to] (unix times)
        self.latest_short_postpone = 0.0  # unix time of the latest return to wait for
        self.done = asyncio.Event()

    def _key(self, tid: str) -> str:
        return tid if self.tenant == DEFAULT_TENANT else f"{self.tenant}/{tid}"

    async def run(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            rng = random.Random(self.seed * 1000 + 999)
            limits = httpx.Limits(max_keepalive_connections=4, max_connections=8)
            async with httpx.AsyncClient(timeout=30, limits=limits) as http:
                if self.roles:
                    await self._set_members(http, rng)
                jobs = [self._worker(w) for w in range(self.workers)]
                if self.roles:
                    jobs.append(self._churn_members(http, rng, started))
                if self.absences:
                    jobs.append(self._substitutions(http, rng, started))
                await asyncio.gather(*jobs)
        finally:
            self.done.set()

    # ------------------------------------------------------------------ audiences

    async def _at(self, started: float, share: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, started + self.duration_s * share - loop.time()))

    async def _set_members(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        for role, spec in self.roles.items():
            k = rng.randint(0, len(spec.floaters))
            members = [*spec.core, *rng.sample(spec.floaters, k)]
            path = f"/api/v1/roles/{role}/members"
            self.members_acked[role] = None
            resp = await self._call(
                http, rng, "PUT", path, auth=self.producer_key,
                json={"members": members}, kind="members",
            )  # fmt: skip
            if resp is None:
                continue
            self._record(resp.status_code, "members", f"PUT {path}", resp.json())
            if resp.status_code == 200:
                self.members_acked[role] = set(members)

    async def _churn_members(
        self, http: httpx.AsyncClient, rng: random.Random, started: float
    ) -> None:
        """Floating members join and leave every role, while sockets are open."""
        for k in range(1, 8):
            await self._at(started, k / 8)
            await self._set_members(http, rng)

    async def _substitutions(
        self, http: httpx.AsyncClient, rng: random.Random, started: float
    ) -> None:
        d = self.duration_s
        await self._at(started, 0.1)
        user, substitute = self.absences[0]
        now = time.time()
        timed = {
            "id": f"{self.prefix}away-{user}",
            "user": user,
            "substitute": substitute,
            "starts_at": _iso(now + 0.15 * d),
            "ends_at": _iso(now + 0.5 * d),
        }
        if await self._post_substitution(http, rng, timed, "substitution timed"):
            self.substitutions_acked[timed["id"]] = "ended"
            self._standins.append([user, substitute, now + 0.15 * d, now + 0.5 * d])
        if len(self.absences) < 2:
            return
        await self._at(started, 0.3)
        user, substitute = self.absences[1]
        now = time.time()
        sub_id = f"{self.prefix}stand-in-{user}"
        body = {
            "id": sub_id,
            "user": user,
            "substitute": substitute,
            "starts_at": _iso(now),
            "ends_at": _iso(now + 3600),
        }
        if not await self._post_substitution(http, rng, body, "substitution now"):
            return
        standin = [user, substitute, now, float("inf")]
        self._standins.append(standin)
        await self._at(started, 0.75)
        standin[3] = time.time()
        path = f"/api/v1/substitutions/{sub_id}"
        resp = await self._call(
            http, rng, "DELETE", path, auth=self.producer_key, kind="substitution delete"
        )
        if resp is not None:
            # (a 404 is a delete that was applied before its answer got lost)
            self._record(resp.status_code, "substitution delete", f"DELETE {path}", resp.json())
            if resp.status_code in (200, 404):
                self.substitutions_acked[sub_id] = "deleted"

    async def _post_substitution(
        self, http: httpx.AsyncClient, rng: random.Random, body: dict[str, Any], kind: str
    ) -> bool:
        resp = await self._call(
            http, rng, "POST", "/api/v1/substitutions", auth=self.producer_key, json=body,
            kind=kind,
        )  # fmt: skip
        if resp is None:
            return False
        self._record(resp.status_code, kind, "POST /api/v1/substitutions", resp.json())
        return resp.status_code in (200, 201)

    def _substitute_for(self, user: str) -> str | None:
        """Who stands in for ``user`` now (clear of the edges), if anyone."""
        now = time.time()
        for absent, substitute, begins, ends in self._standins:
            if absent == user and begins + 0.5 < now < ends - 0.5:
                return str(substitute)
        return None

    # ------------------------------------------------------------------ one worker

    async def _worker(self, w: int) -> None:
        rng = random.Random(self.seed * 1000 + w)
        tasks: dict[str, Model] = {}
        instances: dict[str, set[str]] = {}
        current_instance: list[Any] = [None, 0]
        budget = self.total // self.workers + (1 if w < self.total % self.workers else 0)
        done = 0
        serial = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        # (without roles: the mix as it was before role queues)
        single, person, claims = (0.5, 0.75, 0.93) if self.roles else (0.6, 0.95, 0.95)
        limits = httpx.Limits(max_keepalive_connections=4, max_connections=8)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            while done < budget:
                # Pace: the k-th op of this worker is due at k/budget of the duration.
                due = started + self.duration_s * done / budget
                if (delay := due - loop.time()) > 0:
                    await asyncio.sleep(delay)
                if len(tasks) > MODEL_LIMIT:
                    _forget_finished(tasks, instances)
                roll = rng.random()
                open_ids = [t for t, m in tasks.items() if m.status not in FINAL]
                if roll < 0.25 or len(open_ids) < 5:
                    n = min(budget - done, rng.randint(10, 50))
                    ops = []
                    for _ in range(n):
                        serial += 1
                        ops.append(
                            self._pick_op(rng, w, serial, tasks, instances, current_instance)
                        )
                    done += n
                    await self._batch(http, rng, ops, tasks)
                elif roll < single:
                    serial += 1
                    op = self._pick_op(rng, w, serial, tasks, instances, current_instance)
                    done += 1
                    await self._single(http, rng, op, tasks)
                elif roll < person:
                    done += 1
                    await self._owner_call(http, rng, tasks, open_ids)
                elif roll < claims:
                    done += await self._claim_call(http, rng, tasks, open_ids)
                else:
                    done += 1
                    await self._process_cancel(http, rng, tasks, instances)

    def _pick_op(
        self,
        rng: random.Random,
        w: int,
        serial: int,
        tasks: dict[str, Model],
        instances: dict[str, set[str]],
        current_instance: list[Any],
    ) -> dict[str, Any]:
        open_ids = [t for t, m in tasks.items() if m.status not in FINAL]
        roll = rng.random()
        if roll < 0.35 or not open_ids:
            tid = f"{self.prefix}w{w}-{serial}"
            owner: str | None = None
            role: str | None = None
            body: dict[str, Any] = {"id": tid, "title": f"Step {serial}"}
            if rng.random() < self.role_share:
                role = body["role"] = rng.choice(sorted(self.roles))
            else:
                owner = body["owner"] = rng.choice(self.owners)
            if rng.random() < 0.6:
                # Steps of one instance, a fresh instance every few steps: an instance
                # ends by itself once its last open step ends.
                if current_instance[0] is None or current_instance[1] >= rng.randint(1, 4):
                    current_instance[0] = f"{self.prefix}pw{w}-{serial}"
                    current_instance[1] = 0
                current_instance[1] += 1
                body["process"] = {"instance_id": current_instance[0], "name": "Chaos"}
                instances.setdefault(current_instance[0], set()).add(tid)
            if rng.random() < 0.05:
                body["postponed_until"] = self._until(rng)
            instance = body.get("process", {}).get("instance_id")
            tasks[tid] = Model(owner, "pending", instance, role)
            return {"op": "create", "task": body}
        pool = open_ids if rng.random() > 0.05 or len(tasks) == len(open_ids) else list(tasks)
        tid = rng.choice(pool)
        model = tasks[tid]
        roll = rng.random()
        if roll < 0.1:
            return {"op": "update", "id": tid, "changes": {"title": f"Renamed {serial}"}}
        if roll < 0.3:
            changes: dict[str, Any] = {"owner": rng.choice(self.owners)}
            if self.roles and rng.random() < 0.3:
                # to another queue (a queue task), or a person's task offered to a queue
                role = rng.choice(sorted(self.roles))
                changes = {"role": role} if model.owner is None else {"owner": None, "role": role}
            return {"op": "update", "id": tid, "changes": changes}
        if roll < 0.45:
            return {"op": "postpone", "id": tid, "until": self._until(rng)}
        if roll < 0.55:
            return {"op": "resume", "id": tid}
        if roll < 0.8:
            return {"op": "complete", "id": tid}
        return {"op": "cancel", "id": tid}

    def _until(self, rng: random.Random) -> str:
        if rng.random() < 0.4:
            return FAR_FUTURE
        at = time.time() + rng.uniform(0.3, 2.0)
        self.latest_short_postpone = max(self.latest_short_postpone, at)
        return _iso(at)

    # ------------------------------------------------------------------ calls

    async def _call(
        self,
        http: httpx.AsyncClient,
        rng: random.Random,
        method: str,
        path: str,
        *,
        auth: str,
        json: Any = None,
        kind: str,
        start: int | None = None,
    ) -> httpx.Response | None:
        """One request (to instance ``start`` first, else a random one), sent to another
        instance after a connection error or a 503; None when every attempt failed (then
        it is counted as unexpected)."""
        headers = {"Authorization": f"Bearer {auth}"}
        if start is None:
            start = rng.randrange(len(self.base_urls))
        self.figures.requests += 1
        self.figures.requests_by_kind[kind] += 1
        for attempt in range(60):
            base = self.base_urls[(start + attempt) % len(self.base_urls)]
            try:
                resp = await http.request(method, base + path, json=json, headers=headers)
            except httpx.TransportError as exc:
                self.figures.retries[type(exc).__name__] += 1
                await asyncio.sleep(min(0.05 * (attempt + 1), 0.5))
                continue
            if resp.status_code == 503:
                self.figures.retries["503"] += 1
                await asyncio.sleep(0.2)
                continue
            return resp
        self.figures.unexpected.append(f"{method} {path}: no instance answered")
        return None

    def _record(self, code: int, kind: str, what: str, body: Any) -> None:
        self.figures.ops += 1
        self.figures.ops_by_code[str(code)] += 1
        self.figures.ops_by_kind[kind] += 1
        self.figures.answers[f"{kind} {code}"] += 1
        err = body.get("error", {}) if isinstance(body, dict) else {}
        if code == 422 and err.get("code") == "bad_time":
            return  # a short postponement retried after an instance restart came too late
        if code not in EXPECTED_CODES:
            self.figures.unexpected.append(f"{self.tenant} {what}: {code} {str(body)[:300]}")

    def _learn(
        self, tasks: dict[str, Model], tid: str, code: int, body: Any, claim: bool = False
    ) -> None:
        """Update the worker's model from one result, and remember what was acked."""
        model = tasks.get(tid)
        key = self._key(tid)
        if 200 <= code < 300 and isinstance(body, dict) and "status" in body:
            self.acked[key] = body["status"]
            if claim:
                self.claimed[key] = body["owner"]
            elif key in self.claimed and body["owner"] != self.claimed[key]:
                del self.claimed[key]  # given to someone else since, or back in the queue
            if model is not None:
                model.status, model.owner = body["status"], body["owner"]
                model.role = body.get("role")
        elif code == 409 and model is not None:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            if err.get("code") == "process_ended" and model.status == "pending":
                del tasks[tid]  # never created
            elif "status" in err.get("details", {}):
                model.status = err["details"]["status"]

    async def _batch(
        self,
        http: httpx.AsyncClient,
        rng: random.Random,
        ops: list[dict[str, Any]],
        tasks: dict[str, Model],
    ) -> None:
        resp = await self._call(
            http, rng, "POST", "/api/v1/tasks/batch", auth=self.producer_key,
            json={"ops": ops}, kind="batch",
        )  # fmt: skip
        if resp is None:
            return
        if resp.status_code != 200:
            for op in ops:
                self._record(resp.status_code, op["op"], "batch", resp.text)
            return
        for op, result in zip(ops, resp.json()["results"], strict=True):
            tid = op["task"]["id"] if op["op"] == "create" else op["id"]
            code = result["status"]
            self._record(code, op["op"], f"batch {op['op']} {tid}", result)
            self._learn(tasks, tid, code, result.get("task", result))

    async def _single(
        self,
        http: httpx.AsyncClient,
        rng: random.Random,
        op: dict[str, Any],
        tasks: dict[str, Model],
    ) -> None:
        kind = op["op"]
        if kind == "create":
            tid, method, path, body = op["task"]["id"], "POST", "/api/v1/tasks", op["task"]
        elif kind == "update":
            tid, method, body = op["id"], "PATCH", op["changes"]
            path = f"/api/v1/tasks/{tid}"
        elif kind == "postpone":
            tid, method, body = op["id"], "POST", {"until": op["until"]}
            path = f"/api/v1/tasks/{tid}/postpone"
        else:
            tid, method, body = op["id"], "POST", None
            path = f"/api/v1/tasks/{tid}/{kind}"
        resp = await self._call(
            http, rng, method, path, auth=self.producer_key, json=body, kind=f"single {kind}"
        )
        if resp is None:
            return
        data = resp.json()
        self._record(resp.status_code, kind, f"{method} {path}", data)
        self._learn(tasks, tid, resp.status_code, data)

    async def _owner_call(
        self,
        http: httpx.AsyncClient,
        rng: random.Random,
        tasks: dict[str, Model],
        open_ids: list[str],
    ) -> None:
        """A person acts on a task: its owner, the substitute of an absent owner, or a
        member of the queue it waits in (without claiming it)."""
        tid = rng.choice(open_ids)
        if self._standins and rng.random() < 0.4:
            # (an absent person is one of many: pick their tasks more often)
            away = [t for t in open_ids if self._substitute_for(tasks[t].owner or "")]
            tid = rng.choice(away) if away else tid
        model = tasks[tid]
        if model.owner is not None:
            who, person = "owner", model.owner
            substitute = self._substitute_for(model.owner)
            if substitute is not None and rng.random() < 0.6:
                who, person = "substitute", substitute
        elif model.role in self.roles:
            who, person = "member", rng.choice(self.roles[model.role].core)
        else:
            return  # a create not acknowledged
        roll = rng.random()
        if roll < 0.6:
            kind, body = "complete", None
        elif roll < 0.85:
            kind, body = "postpone", {"until": self._until(rng)}
        else:
            kind, body = "resume", None
        path = f"/api/v1/tasks/{tid}/{kind}"
        resp = await self._call(
            http, rng, "POST", path, auth=self.token(person), json=body,
            kind=f"{who} {kind}",
        )  # fmt: skip
        if resp is None:
            return
        data = resp.json()
        self._record(resp.status_code, f"{who} {kind}", f"{who} POST {path}", data)
        self._learn(tasks, tid, resp.status_code, data)

    async def _claim_call(
        self,
        http: httpx.AsyncClient,
        rng: random.Random,
        tasks: dict[str, Model],
        open_ids: list[str],
    ) -> int:
        """A claim race, a claim (by a member, floating or not, or by the producer for
        one), or an unclaim (by the holder or the producer); returns how many ops."""
        waiting = ("running", "postponed")
        queue = [
            t
            for t in open_ids
            if tasks[t].owner is None and tasks[t].role in self.roles and tasks[t].status in waiting
        ]
        held = [
            t
            for t in open_ids
            if tasks[t].owner is not None
            and tasks[t].role is not None
            and tasks[t].status in waiting
        ]
        fresh = [t for t in queue if not tasks[t].raced]
        roll = rng.random()
        if roll < 0.5 and fresh:
            await self._race(http, rng, tasks, rng.choice(fresh))
            return 2
        path_body: tuple[str, Any, str, str]
        if roll < 0.75 and queue:
            tid = rng.choice(queue)
            spec = self.roles[str(tasks[tid].role)]
            if rng.random() < 0.8:
                person = rng.choice([*spec.core, *spec.floaters])
                path_body = ("claim", None, self.token(person), "claim")
            else:
                person = rng.choice(spec.core)
                path_body = ("claim", {"user": person}, self.producer_key, "producer claim")
        elif held:
            tid = rng.choice(held)
            holder = str(tasks[tid].owner)
            if rng.random() < 0.7:
                path_body = ("unclaim", None, self.token(holder), "unclaim")
            else:
                path_body = ("unclaim", None, self.producer_key, "producer unclaim")
        else:
            return 0
        verb, body, auth, kind = path_body
        path = f"/api/v1/tasks/{tid}/{verb}"
        resp = await self._call(http, rng, "POST", path, auth=auth, json=body, kind=kind)
        if resp is None:
            return 1
        data = resp.json()
        self._record(resp.status_code, kind, f"{kind} POST {path}", data)
        self._learn(tasks, tid, resp.status_code, data, claim=verb == "claim")
        return 1

    async def _race(
        self, http: httpx.AsyncClient, rng: random.Random, tasks: dict[str, Model], tid: str
    ) -> None:
        """Two core members of the task's role claim it at the same moment, each through
        another instance: exactly one may win."""
        model = tasks[tid]
        model.raced = True
        claimers = rng.sample(self.roles[str(model.role)].core, 2)
        n = len(self.base_urls)
        first = rng.randrange(n)
        second = (first + rng.randrange(1, n)) % n if n > 1 else first
        path = f"/api/v1/tasks/{tid}/claim"
        answers = await asyncio.gather(
            *(
                self._call(http, rng, "POST", path, auth=self.token(u), kind="claim race", start=i)
                for u, i in zip(claimers, (first, second), strict=True)
            )
        )
        race = Race(self._key(tid), [])
        for user, resp in zip(claimers, answers, strict=True):
            if resp is None:
                race.answers.append((user, 0, "no answer"))
                continue
            data = resp.json()
            err = data.get("error", {}).get("code", "") if isinstance(data, dict) else ""
            race.answers.append((user, resp.status_code, str(err)))
            self._record(resp.status_code, "claim race", f"claim race {user} {path}", data)
        for (_, code, _), resp in zip(race.answers, answers, strict=True):
            if resp is not None and code == 200:
                self._learn(tasks, tid, code, resp.json(), claim=True)
        self.races.append(race)

    async def _process_cancel(
        self,
        http: httpx.AsyncClient,
        rng: random.Random,
        tasks: dict[str, Model],
        instances: dict[str, set[str]],
    ) -> None:
        live = [i for i, ids in instances.items() if any(tid in tasks for tid in ids)]
        if not live:
            return
        instance = rng.choice(live)
        path = f"/api/v1/processes/{instance}/cancel"
        resp = await self._call(
            http, rng, "POST", path, auth=self.producer_key, kind="process cancel"
        )
        if resp is None:
            return
        data = resp.json()
        self._record(resp.status_code, "process cancel", f"POST {path}", data)
        if resp.status_code == 200:
            for tid in instances.pop(instance, set()):
                model = tasks.get(tid)
                if model is not None and model.status not in FINAL:
                    model.status = "canceled"


@dataclass(frozen=True)
class TenantPlan:
    """One tenant of the mix: its producer key, role queues and absences, its share of
    the operations and how many tabs each of its people keeps open."""

    tenant: str
    producer_key: str
    roles: dict[str, RoleSpec]
    absences: tuple[tuple[str, str], ...]
    share: float
    clients_per_owner: int


def two_tenants(
    owners: Sequence[str], producer_key: str, other_key: str, other: str = "acme"
) -> list[TenantPlan]:
    """The default tenant and ``other``, with the same user ids, the same role ids
    (``approvers``, ``clerks``: other members) and the same task ids (the workloads
    share their prefix). Needs at least 12 owners."""
    o = list(owners)
    if len(o) < 12:
        raise ValueError("the two-tenant mix needs at least 12 owners")
    h = len(o) // 2
    return [
        TenantPlan(
            DEFAULT_TENANT,
            producer_key,
            {
                "approvers": RoleSpec((o[0], o[1], o[2]), tuple(o[3:9])),
                "clerks": RoleSpec((o[4], o[5]), tuple(o[6:12])),
            },
            ((o[h], o[h + 1]), (o[h + 2], o[h + 3])),
            0.6,
            3,
        ),
        TenantPlan(
            other,
            other_key,
            {
                "approvers": RoleSpec((o[5], o[6]), tuple(o[0:5])),
                "clerks": RoleSpec((o[0], o[1], o[2]), tuple(o[7:12])),
            },
            ((o[h], o[h + 2]), (o[1], o[h + 1])),
            0.4,
            2,
        ),
    ]


def producer_keys_setting(plans: Sequence[TenantPlan]) -> str:
    """``TASKBELL_PRODUCER_KEYS`` for the plans (a bare key for the default tenant)."""
    return ",".join(
        p.producer_key if p.tenant == DEFAULT_TENANT else f"{p.tenant}={p.producer_key}"
        for p in plans
    )


# ---------------------------------------------------------------------- checks


@dataclass
class ClientFigures:
    clients: int = 0
    events: int = 0
    role_events: int = 0  # of those, in role queues
    standin_events: int = 0  # of those, in the own feed of someone stood in for
    connections: int = 0
    snapshots_after_first: int = 0
    needless_snapshots: int = 0
    joined: int = 0
    left: int = 0
    gaps: int = 0
    feeds_at_end: Counter[int] = field(default_factory=Counter)  # feeds followed -> clients
    closes: Counter[str] = field(default_factory=Counter)


def compare(clients: Sequence[ResumingClient], truth: Audit) -> tuple[list[str], ClientFigures]:
    """Every client against the database: it follows exactly the feeds the database
    says its person follows, each at the same seq and count and with the same tasks at
    the end, and each event it applied, in every feed it ever followed, equal (type,
    task, count) to the one the database kept."""
    problems: list[str] = []
    figures = ClientFigures(clients=len(clients))
    for c in clients:
        v = c.view
        figures.events += sum(len(a) for a in v.applied.values())
        figures.role_events += sum(len(a) for f, a in v.applied.items() if f.startswith("role:"))
        figures.standin_events += sum(
            len(a) for f, a in v.applied.items() if f.startswith("user:") and f != v.own
        )
        figures.connections += c.connections
        figures.snapshots_after_first += max(0, v.snapshots - 1)
        figures.needless_snapshots += c.needless_snapshots
        figures.joined += v.joined
        figures.left += v.left
        figures.gaps += c.gaps
        figures.feeds_at_end[len(v.feeds)] += 1
        figures.closes.update(c.closes)
        if c.violation is not None:
            problems.append(c.violation)
            continue
        wanted = truth.feeds_of(c.tenant, c.owner)
        if set(v.feeds) != set(wanted):
            problems.append(f"{c.name}: follows {sorted(v.feeds)}, the database says {wanted}")
        for feed, pos in v.feeds.items():
            name = name_of(c.tenant, feed)
            t = truth.owners.get(name, OwnerTruth())
            if (pos.seq, pos.count) != (t.seq, t.count):
                problems.append(
                    f"{c.name} {feed}: client at {pos.seq}/{pos.count}, database {t.seq}/{t.count}"
                )
            elif pos.postponed != t.postponed:
                # (the audit checked t.postponed against the feed's postponed tasks)
                problems.append(
                    f"{c.name} {feed}: client postponed {pos.postponed}, database {t.postponed}"
                )
            elif pos.tasks != t.running:
                problems.append(f"{c.name} {feed}: client tasks differ from the running ones")
        for feed, applied in v.applied.items():
            t = truth.owners.get(name_of(c.tenant, feed), OwnerTruth())
            for s, event in sorted(applied.items()):
                kept = t.events.get(s)
                if kept != event:
                    problems.append(f"{c.name} {feed}@{s}: client applied {event}, database {kept}")
                    break
        for feed, spans in v.spans.items():
            want = {s for a, b in spans for s in range(a + 1, b + 1)}
            if set(v.applied.get(feed, {})) != want:
                problems.append(f"{c.name} {feed}: events applied are not those of {spans}")
    return problems, figures


def _works(work: Workload | Sequence[Workload] | None) -> list[Workload]:
    if work is None:
        return []
    return [work] if isinstance(work, Workload) else list(work)


def _shape(truth: Audit) -> tuple[Any, ...]:
    return (
        {o: t.seq for o, t in truth.owners.items()},
        {k: frozenset(v) for k, v in truth.members.items()},
        truth.substitutions,
    )


async def settle(
    db_url: str,
    clients: Sequence[ResumingClient],
    work: Workload | Sequence[Workload] | None,
) -> Audit:
    """Wait until the database stops changing (short postponements have come back,
    substitutions have ended) and every client follows its person's feeds, each at the
    database's seq; returns the final audit."""
    works = _works(work)
    latest = max((w.latest_short_postpone for w in works), default=0.0)
    await asyncio.sleep(max(0.0, latest - time.time()) + 1.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        truth = await audit_url(db_url)
        await asyncio.gather(
            *(
                c.wait_for(partial(c.agrees, truth), max(0.1, deadline - loop.time()))
                for c in clients
            )
        )
        again = await audit_url(db_url)
        if _shape(again) == _shape(truth) or loop.time() > deadline:
            return again


def check_acked(acked: dict[str, str], statuses: dict[str, str]) -> list[str]:
    """Nothing acknowledged is lost: every acked task exists, and one acked as completed
    or canceled is still so."""
    problems = []
    for tid, status in acked.items():
        now = statuses.get(tid)
        if now is None:
            problems.append(f"acked task {tid} is missing")
        elif status in FINAL and now != status:
            problems.append(f"acked {tid} as {status}, the database says {now}")
    return problems


def check_writes(work: Workload | Sequence[Workload], truth: Audit) -> list[str]:
    """Every acknowledged write of the workloads (in the order they ran) is in the
    database: tasks (``check_acked``), claims (each race has exactly one winner among
    the 200s, the other claimer got 409 ``already_claimed``; a task whose last acked
    claim made X its owner, untouched since, is X's), each role's members as last put,
    and each substitution ended or deleted."""
    problems: list[str] = []
    members: dict[tuple[str, str], set[str] | None] = {}
    for w in _works(work):
        problems += check_acked(w.acked, truth.statuses)
        for race in w.races:
            winners = {u for u, code, _ in race.answers if code == 200}
            if len(winners) != 1:
                problems.append(
                    f"claim race on {race.task}: winners {sorted(winners)}: {race.answers}"
                )
            for u, code, err in race.answers:
                if u not in winners and (code, err) != (409, "already_claimed"):
                    problems.append(f"claim race on {race.task}: {u} got {code} {err}")
        for tid, owner in w.claimed.items():
            if truth.task_owners.get(tid, "(missing)") != owner:
                problems.append(
                    f"{tid} acked as claimed by {owner}, the database says "
                    f"{truth.task_owners.get(tid, '(missing)')}"
                )
        for role, who in w.members_acked.items():
            members[(w.tenant, role)] = who
        for sub_id, end in w.substitutions_acked.items():
            state = truth.substitutions.get((w.tenant, sub_id))
            if end == "ended" and (state is None or state[2] != "ended"):
                problems.append(f"{w.tenant} substitution {sub_id} should have ended: {state}")
            if end == "deleted" and state is not None:
                problems.append(f"{w.tenant} substitution {sub_id} was deleted: {state}")
    for (tenant, role), who in members.items():
        if who is not None and truth.members.get((tenant, role)) != who:
            problems.append(
                f"{tenant} role {role}: last put {sorted(who)}, the database has "
                f"{sorted(truth.members.get((tenant, role), set()))}"
            )
    return problems


# ---------------------------------------------------------------------- the cluster


class Cluster:
    """``n`` real server processes sharing one Redis and one PostgreSQL database."""

    def __init__(self, redis: RedisServer, db_url: str, n: int, env: dict[str, str]) -> None:
        self.redis = redis
        self.db_url = db_url
        base = {"DATABASE_URL": db_url, "REDIS_URL": redis.url, **env}
        self.servers = [ServerProcess(base) for _ in range(n)]

    @property
    def base_urls(self) -> list[str]:
        return [s.base_url for s in self.servers]

    @property
    def ws_urls(self) -> list[str]:
        return [s.ws_url for s in self.servers]

    async def start(self) -> None:
        # The first one migrates the database alone; the others start together.
        await asyncio.to_thread(self._start, self.servers[0])
        await asyncio.gather(*(asyncio.to_thread(self._start, s) for s in self.servers[1:]))

    @staticmethod
    def _start(server: ServerProcess) -> None:
        server.start()
        server.wait_ready()

    def close(self) -> None:
        for server in self.servers:
            server.close()

    async def restart(self, i: int, how: str) -> int | None:
        """Stop instance ``i`` with SIGTERM (``how="term"``) or SIGKILL, start it again
        on the same port; returns the exit status of the stopped process."""
        server = self.servers[i]
        status = await asyncio.to_thread(server.stop if how == "term" else server.kill)
        await asyncio.to_thread(self._start, server)
        return status

    async def broker_states(self, http: httpx.AsyncClient) -> list[str]:
        """Each running instance's broker check from /readyz ("ok", "unreachable"), or
        "away" for one that does not answer."""
        out = []
        for server in self.servers:
            try:
                resp = await http.get(server.base_url + "/readyz", timeout=3)
                out.append(str(resp.json()["checks"]["broker"]))
            except (httpx.TransportError, ValueError, KeyError):
                out.append("away")
        return out

    async def redis_outage(self, how: str, down_s: float) -> dict[str, Any]:
        """Break Redis (``kill``, ``pause`` or ``flushall``), for ``down_s`` seconds when
        that means anything, and report what each instance's /readyz said meanwhile and
        how long until they all were ready again."""
        seen: set[int] = set()
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient() as http:
            began = loop.time()
            if how == "kill":
                await asyncio.to_thread(self.redis.kill)
            elif how == "pause":
                self.redis.suspend()
            else:
                await asyncio.to_thread(self.redis.flushall)
            while loop.time() - began < down_s:
                for i, state in enumerate(await self.broker_states(http)):
                    if state == "unreachable":
                        seen.add(i)
                await asyncio.sleep(0.2)
            if how == "kill":
                await asyncio.to_thread(self.redis.start)
            elif how == "pause":
                self.redis.resume()
            back = loop.time()
            while loop.time() - back < 30:
                if all(s == "ok" for s in await self.broker_states(http)):
                    break
                await asyncio.sleep(0.1)
            ready_after = loop.time() - back
        return {
            "how": how,
            "down_s": down_s,
            "saw_down": sorted(seen),
            "ready_after_s": ready_after,
        }
