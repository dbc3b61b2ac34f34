"""The chaos mix, shared by the chaos test and the soak benchmark (bench/soak.py).

- ``ResumingClient``: one panel tab that never gives up. It applies its feed with the
  contract's checks (contiguous seqs, ``count == len(tasks)`` on every message, no seq
  applied twice, a snapshot never going back) and, on any close or connection error,
  reconnects with ``since`` to another instance.
- ``Workload``: producer and owner operations over HTTP (batches, single calls, owner
  calls, process cancels) spread over every instance, retried elsewhere when an
  instance is away, with every acknowledged result remembered.
- ``compare``: each client against the database's audit (``audit.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.faults.audit import Audit, audit_url
from tests.support.server_proc import ServerProcess
from tests.support.services import RedisServer

FINAL = ("completed", "canceled")
FAR_FUTURE = "2099-01-01T00:00:00Z"


class Violation(AssertionError):
    """Something a client saw breaks the feed contract."""


# ---------------------------------------------------------------------- clients


@dataclass
class FeedView:
    """What one tab shows, kept across its reconnections."""

    seq: int = 0
    count: int = 0
    tasks: set[str] = field(default_factory=set)
    # seq -> (type, task id, count) of every event applied, to compare with the database
    applied: dict[int, tuple[str, str, int]] = field(default_factory=dict)
    snapshots: int = 0
    connected_once: bool = False

    def apply(self, msg: dict[str, Any]) -> None:
        """Apply one server message; raises ``Violation`` when it breaks the contract."""
        kind = msg["type"]
        if kind == "snapshot":
            if self.connected_once and msg["seq"] < self.seq:
                raise Violation(f"snapshot went back from {self.seq} to {msg['seq']}")
            self.snapshots += 1
            self.tasks = {t["id"] for t in msg["tasks"]}
            self.seq, self.count = msg["seq"], msg["count"]
            if len(self.tasks) != self.count:
                raise Violation(f"snapshot count {self.count} with {len(self.tasks)} tasks")
        elif kind == "synced":
            if (msg["seq"], msg["count"]) != (self.seq, self.count):
                raise Violation(f"synced {msg['seq']}/{msg['count']} at {self.seq}/{self.count}")
        elif kind in ("task.added", "task.updated", "task.removed"):
            seq = msg["seq"]
            if seq in self.applied:
                raise Violation(f"seq {seq} applied twice")
            if seq != self.seq + 1:
                raise Violation(f"gap or repeat: {self.seq} -> {seq}")
            task_id = msg["task"]["id"]
            if kind == "task.removed":
                self.tasks.discard(task_id)
            else:
                self.tasks.add(task_id)
            self.seq, self.count = seq, msg["count"]
            self.applied[seq] = (kind, task_id, self.count)
            if len(self.tasks) != self.count:
                raise Violation(f"count {self.count} with {len(self.tasks)} tasks at seq {seq}")
        elif kind == "ping":
            (pos,) = msg["feeds"].values()
            if (pos["seq"], pos["count"]) != (self.seq, self.count):
                raise Violation(f"heartbeat {pos} at {self.seq}/{self.count}")
        elif kind != "pong":
            raise Violation(f"unknown message type {kind!r}")


class ResumingClient:
    """A tab of ``owner`` that reconnects with ``since`` to the next instance whenever
    its socket ends, until ``stop()``."""

    def __init__(self, owner: str, token: str, ws_urls: Sequence[str], first: int) -> None:
        self.owner = owner
        self.token = token
        self.ws_urls = list(ws_urls)
        self.index = first
        self._rng = random.Random(f"{owner}/{first}")
        self.view = FeedView()
        self.closes: Counter[str] = Counter()
        self.violation: str | None = None
        self.connections = 0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._progress = asyncio.Event()
        self._connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"client:{self.owner}")

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_seq(self, seq: int, timeout: float) -> bool:
        """Wait until the view reached ``seq`` (or broke); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.view.seq < seq and self.violation is None:
            self._progress.clear()
            left = deadline - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), min(left, 0.5))
        return self.view.seq >= seq

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
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                self.closes[f"connect: {type(exc).__name__}"] += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            except Violation as exc:
                self.violation = f"{self.owner} via {url}: {exc}"
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
            if self.view.connected_once:
                auth["since"] = self.view.seq
            await ws.send(orjson.dumps(auth).decode())
            self.connections += 1
            async for raw in ws:
                msg = orjson.loads(raw)
                self.view.apply(msg)
                if msg["type"] in ("snapshot", "synced"):
                    self.view.connected_once = True
                    self._connected.set()
                self._progress.set()


# ---------------------------------------------------------------------- workload


@dataclass
class Model:
    owner: str
    status: str
    instance: str | None


@dataclass
class WorkloadFigures:
    ops: int = 0
    requests: int = 0
    ops_by_code: Counter[str] = field(default_factory=Counter)
    ops_by_kind: Counter[str] = field(default_factory=Counter)
    requests_by_kind: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)


EXPECTED_CODES = {200, 201, 404, 409}
MODEL_LIMIT = 2000  # tasks a worker keeps in mind; long soaks forget finished ones


def _forget_finished(tasks: dict[str, Model], instances: dict[str, set[str]]) -> None:
    """Keep the open tasks and the 200 newest finished ones (to act on final tasks)."""
    finished = [t for t, m in tasks.items() if m.status in FINAL]
    for tid in finished[:-200]:
        del tasks[tid]
    for iid in [i for i, ids in instances.items() if not any(t in tasks for t in ids)]:
        del instances[iid]


class Workload:
    """``total`` random operations by ``workers`` concurrent producers, paced to last
    about ``duration_s``, over the instances at ``base_urls`` (any of which may be away
    for a while: a call then goes to another one)."""

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
        self.figures = WorkloadFigures()
        self.acked: dict[str, str] = {}  # task id -> status in its last 2xx answer
        self.latest_short_postpone = 0.0  # unix time of the latest return to wait for
        self.done = asyncio.Event()

    async def run(self) -> None:
        try:
            await asyncio.gather(*(self._worker(w) for w in range(self.workers)))
        finally:
            self.done.set()

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
                elif roll < 0.6:
                    serial += 1
                    op = self._pick_op(rng, w, serial, tasks, instances, current_instance)
                    done += 1
                    await self._single(http, rng, op, tasks)
                elif roll < 0.95:
                    done += 1
                    await self._owner_call(http, rng, tasks, open_ids)
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
            owner = rng.choice(self.owners)
            body: dict[str, Any] = {"id": tid, "owner": owner, "title": f"Step {serial}"}
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
            tasks[tid] = Model(owner, "pending", body.get("process", {}).get("instance_id"))
            return {"op": "create", "task": body}
        pool = open_ids if rng.random() > 0.05 or len(tasks) == len(open_ids) else list(tasks)
        tid = rng.choice(pool)
        roll = rng.random()
        if roll < 0.1:
            return {"op": "update", "id": tid, "changes": {"title": f"Renamed {serial}"}}
        if roll < 0.3:
            return {"op": "update", "id": tid, "changes": {"owner": rng.choice(self.owners)}}
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
        return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")

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
    ) -> httpx.Response | None:
        """One request, sent to another instance after a connection error or a 503;
        None when every attempt failed (then it is counted as unexpected)."""
        headers = {"Authorization": f"Bearer {auth}"}
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
        err = body.get("error", {}) if isinstance(body, dict) else {}
        if code == 422 and err.get("code") == "bad_time":
            return  # a short postponement retried after an instance restart came too late
        if code not in EXPECTED_CODES:
            self.figures.unexpected.append(f"{what}: {code} {str(body)[:300]}")

    def _learn(self, tasks: dict[str, Model], tid: str, code: int, body: Any) -> None:
        """Update the worker's model from one result, and remember what was acked."""
        model = tasks.get(tid)
        if 200 <= code < 300 and isinstance(body, dict) and "status" in body:
            self.acked[tid] = body["status"]
            if model is not None:
                model.status, model.owner = body["status"], body["owner"]
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
        tid = rng.choice(open_ids)
        model = tasks[tid]
        roll = rng.random()
        if roll < 0.6:
            kind, body = "complete", None
        elif roll < 0.85:
            kind, body = "postpone", {"until": self._until(rng)}
        else:
            kind, body = "resume", None
        path = f"/api/v1/tasks/{tid}/{kind}"
        resp = await self._call(
            http, rng, "POST", path, auth=self.token(model.owner), json=body,
            kind=f"owner {kind}",
        )  # fmt: skip
        if resp is None:
            return
        data = resp.json()
        self._record(resp.status_code, f"owner {kind}", f"owner POST {path}", data)
        self._learn(tasks, tid, resp.status_code, data)

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


# ---------------------------------------------------------------------- checks


@dataclass
class ClientFigures:
    clients: int = 0
    events: int = 0
    connections: int = 0
    snapshots_after_first: int = 0
    closes: Counter[str] = field(default_factory=Counter)


def compare(clients: Sequence[ResumingClient], truth: Audit) -> tuple[list[str], ClientFigures]:
    """Every client against the database: same seq, count and tasks at the end, and each
    event it applied equal (type, task, count) to the one the database kept."""
    problems: list[str] = []
    figures = ClientFigures(clients=len(clients))
    for c in clients:
        v = c.view
        figures.events += len(v.applied)
        figures.connections += c.connections
        figures.snapshots_after_first += max(0, v.snapshots - 1)
        figures.closes.update(c.closes)
        if c.violation is not None:
            problems.append(c.violation)
            continue
        t = truth.owners.get(c.owner)
        seq, count, running = (t.seq, t.count, t.running) if t else (0, 0, set())
        if (v.seq, v.count) != (seq, count):
            problems.append(f"{c.owner}: client at {v.seq}/{v.count}, database {seq}/{count}")
        elif v.tasks != running:
            problems.append(f"{c.owner}: client tasks differ from the running ones")
        for s, event in v.applied.items():
            kept = t.events.get(s) if t else None
            if kept != event:
                problems.append(f"{c.owner}@{s}: client applied {event}, database has {kept}")
                break
        if v.snapshots == 1 and set(v.applied) != set(range(1, v.seq + 1)):
            problems.append(f"{c.owner}: events applied are not exactly 1..{v.seq}")
    return problems, figures


async def settle(db_url: str, clients: Sequence[ResumingClient], work: Workload | None) -> Audit:
    """Wait until the database stops changing (short postponements have come back) and
    every client has reached its owner's last seq; returns the final audit."""
    if work is not None:
        await asyncio.sleep(max(0.0, work.latest_short_postpone - time.time()) + 1.0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while True:
        truth = await audit_url(db_url)
        await asyncio.gather(
            *(
                c.wait_seq(truth.owners[c.owner].seq, max(0.1, deadline - loop.time()))
                for c in clients
                if c.owner in truth.owners
            )
        )
        again = await audit_url(db_url)
        same = all(again.owners[o].seq == t.seq for o, t in truth.owners.items())
        if (same and len(again.owners) == len(truth.owners)) or loop.time() > deadline:
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
