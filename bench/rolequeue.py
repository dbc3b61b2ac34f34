"""Queue scenario: one role queue followed by every member's socket, members claiming.

Phases:
1. ``PUT /roles/desk/members`` with ``--members`` users, then one WebSocket per member
   (auth + snapshot; the snapshot must list the ``role:desk`` feed);
2. a producer creates queue tasks (``"role": "desk"``) at ``--rate`` per second for
   ``--duration`` seconds; every member's socket must receive each one on
   ``role:desk`` (``task.added``). ``--claimers`` members per task (a different set for
   each task, round-robin) race for it: each claims it (``POST /tasks/{id}/claim``
   with its own token) the moment its own socket shows it. Exactly one claim must get
   200 and the others 409 ``already_claimed``; every member's socket must then receive
   ``task.removed`` (``reason: claimed``) on ``role:desk``, and only the winner's
   ``task.added`` on its ``user:`` feed;
3. integrity per feed: every expected event exactly once, in seq order, no gaps, the
   same count for the same (feed, seq) on every socket.

Latencies (all in this process, ``time.monotonic_ns()``): create-to-panel from the
create request being written to ``task.added`` read off each member's socket; claim
race from a claim request being written to its answer; removal-to-every-member from the
winning claim's request being written to ``task.removed`` read off each socket.

    python -m bench.run --only queue [--quick]       # in the pinned harness
    TASKBELL_SECRET=... TASKBELL_PRODUCER_KEY=... python -m bench.rolequeue --url ... \\
        --members 1000 --rate 200 --duration 20 --server-pid <pid>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import sys
import time
import uuid
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import orjson
import psutil
from websockets.asyncio.client import ClientConnection, connect

from bench.feed import CONNECT_ERRORS, EVENT_TYPES, ProtocolViolation, websocket_url
from bench.loadgen import mint_token, run_in_loop, wait_healthy
from bench.meters import Meters, rss_kb
from bench.rawhttp import Connection, HttpError
from bench.report import BUSY_CPU_PCT, NOISY_CPU_PCT
from bench.stats import per_second, summarize_ns

ROLE = "desk"
ROLE_FEED = f"role:{ROLE}"
_PONG = b'{"type":"pong"}'
_LATE_NS = 5_000_000


@dataclass(frozen=True, slots=True)
class QueueOptions:
    url: str
    members: int
    rate: float
    duration_s: float
    claimers: int
    concurrency: int
    claim_concurrency: int
    connect_concurrency: int
    producer_key: str
    secret: str
    server_pid: int | None = None
    compression: Literal["deflate"] | None = "deflate"
    settle_s: float = 5.0
    label: str = "queue"
    json_path: Path | None = None
    loop: str = "uvloop"
    member_prefix: str = "bench-m"


@dataclass(slots=True)
class QueueResult:
    label: str = ""
    members: int = 0
    rate_target: float = 0.0
    duration_s: float = 0.0
    claimers_per_task: int = 0
    compression: str = ""
    event_loop: str = ""
    # Connect.
    connected: int = 0
    connect_failures: int = 0
    connect_s: float = math.nan
    connects_per_s: float = math.nan
    rss_before_kb: float = math.nan
    rss_after_connect_kb: float = math.nan
    rss_after_drive_kb: float = math.nan
    # Creates.
    creates_sent: int = 0
    creates_acked: int = 0
    creates_failed: int = 0
    drive_s: float = math.nan
    creates_per_s: float = math.nan
    create_request_p50_ms: float = math.nan
    create_request_p99_ms: float = math.nan
    late_slots: int = 0
    max_lag_ms: float = math.nan
    # Claims.
    claims_sent: int = 0
    claim_statuses: dict[str, int] = field(default_factory=dict)
    claim_p50_ms: float = math.nan
    claim_p99_ms: float = math.nan
    claim_max_ms: float = math.nan
    claim_pool_wait_max_ms: float = math.nan  # load generator side, not in the latency
    claim_retries: int = 0  # sent again: the idle keep-alive connection had been closed
    tasks_claimed: int = 0
    tasks_unclaimed: int = 0  # acked creates no claim won
    tasks_several_winners: int = 0
    claims_other_answer: int = 0  # neither 200 nor 409 already_claimed
    # Deliveries.
    events_delivered: int = 0
    delivery_s: float = math.nan
    deliveries_per_s: float = math.nan
    e2e_tasks_per_s: float = math.nan  # acked creates / time until the last delivery
    create_p50_ms: float = math.nan
    create_p90_ms: float = math.nan
    create_p99_ms: float = math.nan
    create_max_ms: float = math.nan
    removal_p50_ms: float = math.nan
    removal_p99_ms: float = math.nan
    removal_max_ms: float = math.nan
    # Integrity, per feed kind: "role:desk" and "user:*" (every member's own feed).
    expected: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)
    out_of_order: dict[str, int] = field(default_factory=dict)
    seq_gaps: dict[str, int] = field(default_factory=dict)
    count_mismatches: int = 0
    unmatched_events: int = 0
    wrong_claim_owner: int = 0  # user-feed task.added on a socket that did not win
    closed_by_server: int = 0
    close_codes: dict[str, int] = field(default_factory=dict)
    protocol_violations: int = 0
    # CPU.
    loadgen_cpu_drive_pct: float = math.nan
    server_cpu_drive_pct: float = math.nan
    server_cpu_s: float = math.nan
    server_cpu_us_per_event: float = math.nan
    server_cpu_ms_per_task: float = math.nan
    cores_drive: str = ""
    others_cpu_drive_pct: float = math.nan
    error_samples: list[str] = field(default_factory=list)

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())

    @property
    def integrity_problems(self) -> int:
        return (
            self.lost_total
            + sum(self.duplicates.values())
            + sum(self.out_of_order.values())
            + self.count_mismatches
            + self.wrong_claim_owner
        )

    @property
    def machine_noisy(self) -> bool:
        return _num(self.others_cpu_drive_pct) >= NOISY_CPU_PCT

    @property
    def loadgen_busy(self) -> bool:
        return _num(self.loadgen_cpu_drive_pct) >= BUSY_CPU_PCT

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes) -> QueueResult:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a queue result must be a JSON object")
        floats = {f.name for f in fields(cls) if f.type == "float"}
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {
            k: (math.nan if v is None and k in floats else v) for k, v in data.items() if k in known
        }
        return cls(**values)


def _num(value: float) -> float:
    return 0.0 if math.isnan(value) else value


@dataclass(slots=True)
class SeqCheck:
    """One socket's view of one feed: contiguous seqs from its snapshot's, with the
    holes left by a gap remembered so a late arrival is told from a duplicate."""

    last: int
    start: int
    holes: set[int] = field(default_factory=set)
    duplicates: int = 0
    out_of_order: int = 0

    def accept(self, seq: int) -> bool:
        """True if this seq is new for this socket (counted once)."""
        if seq == self.last + 1:
            self.last = seq
            return True
        if seq > self.last + 1:
            self.holes.update(range(self.last + 1, seq))
            self.last = seq
            return True
        if seq in self.holes:
            self.holes.discard(seq)
            self.out_of_order += 1
            return True
        self.duplicates += 1
        return False


@dataclass(slots=True)
class TaskTrack:
    """One queue task: when it was created, who races for it, what every socket saw."""

    number: int
    claimers: tuple[int, ...]
    create_sent_ns: int = 0
    acked: bool = False
    added_seen: int = 0  # sockets that got task.added on role:desk
    removed_seen: int = 0  # sockets that got task.removed on role:desk
    removed_ns: array[int] = field(default_factory=lambda: array("q"))
    claim_sent_ns: dict[int, int] = field(default_factory=dict)  # member -> sent
    claim_status: dict[int, int] = field(default_factory=dict)  # member -> status
    winner_user_added: list[int] = field(default_factory=list)  # members that got it


@dataclass(slots=True)
class Shared:
    """What every socket and request writes into."""

    tasks: dict[str, TaskTrack] = field(default_factory=dict)
    create_latency_ns: array[int] = field(default_factory=lambda: array("q"))
    claim_latency_ns: array[int] = field(default_factory=lambda: array("q"))
    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    count_mismatches: int = 0
    events: int = 0
    unmatched: int = 0
    last_ns: int = 0
    claims_in_flight: int = 0
    claim_statuses: Counter[str] = field(default_factory=Counter)
    claims_other: int = 0
    error_samples: list[str] = field(default_factory=list)

    def note_error(self, text: str) -> None:
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])


class ClaimPool:
    """Keep-alive connections for members' claims (opened when first needed), each
    request with its own token. A claim waiting for a free connection is the load
    generator's limit, not the server's: that wait is kept apart (``max_wait_ns``).

    The most recently used connection is taken first, so the rest go idle and the
    server's keep-alive timeout closes them; a request that finds its connection closed
    that way (nothing read back) is sent once more on a new one, as HTTP clients do (a
    repeated claim is harmless: the winner claiming again gets 200). ``retries`` counts
    them; the latency still runs from the first write."""

    def __init__(self, api: str, size: int) -> None:
        self._gate = asyncio.Semaphore(size)
        self._idle = [Connection(api) for _ in range(size)]
        self._all = list(self._idle)
        self.max_wait_ns = 0
        self.retries = 0

    async def claim(self, task_id: str, auth: bytes) -> tuple[int, bytes, int]:
        """(status, body, when the request was written); raises ClaimFailed."""
        asked = time.monotonic_ns()
        async with self._gate:
            connection = self._idle.pop()
            sent = time.monotonic_ns()
            self.max_wait_ns = max(self.max_wait_ns, sent - asked)
            path = f"/tasks/{task_id}/claim"
            try:
                try:
                    response = await connection.request("POST", path, None, auth)
                except HttpError as exc:
                    if not isinstance(exc.__cause__, asyncio.IncompleteReadError):
                        raise
                    self.retries += 1
                    response = await connection.request("POST", path, None, auth)
                return response.status, response.body, sent
            except HttpError as exc:
                raise ClaimFailed(str(exc), sent) from exc
            finally:
                self._idle.append(connection)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._all))


class ClaimFailed(Exception):
    def __init__(self, text: str, sent_ns: int) -> None:
        super().__init__(text)
        self.sent_ns = sent_ns


@dataclass(slots=True)
class Member:
    index: int
    user: str
    auth: bytes  # "Authorization: Bearer ...\r\n"
    ws: ClientConnection
    role: SeqCheck
    own: SeqCheck
    closed: bool = False
    close_code: int | None = None
    violations: list[str] = field(default_factory=list)

    async def run(self, shared: Shared, claims: ClaimPool, spawn: set[asyncio.Task[None]]) -> None:
        ws, tasks, me = self.ws, shared.tasks, self.index
        try:
            while True:
                raw = await ws.recv(decode=False)
                now = time.monotonic_ns()
                try:
                    data = orjson.loads(raw)
                    kind = data["type"]
                    if kind not in EVENT_TYPES:
                        if kind == "ping":
                            await ws.send(_PONG, text=True)
                        elif kind != "pong":
                            self.violations.append(f"unexpected {raw[:200]!r}")
                        continue
                    feed, seq, count = data["feed"], int(data["seq"]), int(data["count"])
                    task_id, reason = data["task"]["id"], data.get("reason")
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    self.violations.append(f"malformed message {raw[:200]!r}: {exc!r}")
                    continue
                shared.events += 1
                shared.last_ns = now
                seen = shared.counts.setdefault((feed, seq), count)
                if seen != count:
                    shared.count_mismatches += 1
                track = tasks.get(task_id)
                if feed == ROLE_FEED:
                    if not self.role.accept(seq):
                        continue
                    if track is None:
                        shared.unmatched += 1
                    elif kind == "task.added":
                        track.added_seen += 1
                        shared.create_latency_ns.append(now - track.create_sent_ns)
                        if me in track.claimers:
                            spawn_claim(self, task_id, track, shared, claims, spawn)
                    elif kind == "task.removed" and reason == "claimed":
                        track.removed_seen += 1
                        track.removed_ns.append(now)
                    else:
                        shared.unmatched += 1
                elif feed == f"user:{self.user}":
                    if not self.own.accept(seq):
                        continue
                    if track is not None and kind == "task.added" and reason == "claimed":
                        track.winner_user_added.append(me)
                    else:
                        shared.unmatched += 1
                else:
                    self.violations.append(f"event of a feed not followed: {feed}")
        except CONNECT_ERRORS as exc:
            self.closed = True
            rcvd = getattr(exc, "rcvd", None)
            self.close_code = rcvd.code if rcvd is not None else None


def spawn_claim(
    member: Member,
    task_id: str,
    track: TaskTrack,
    shared: Shared,
    claims: ClaimPool,
    spawn: set[asyncio.Task[None]],
) -> None:
    async def go() -> None:
        try:
            status, body, sent = await claims.claim(task_id, member.auth)
        except ClaimFailed as exc:
            status, body, sent = 0, str(exc).encode(), exc.sent_ns
        track.claim_sent_ns[member.index] = sent
        shared.claim_latency_ns.append(time.monotonic_ns() - sent)
        track.claim_status[member.index] = status
        label = str(status)
        if status == 409:
            code = _error_code(body)
            label = f"409 {code}"
            if code != "already_claimed":
                shared.claims_other += 1
        elif status != 200:
            shared.claims_other += 1
            shared.note_error(f"claim {task_id} by {member.user} -> {status} {body[:200]!r}")
        shared.claim_statuses[label] += 1

    shared.claims_in_flight += 1
    job = asyncio.create_task(go())
    spawn.add(job)

    def done(j: asyncio.Task[None]) -> None:
        spawn.discard(j)
        shared.claims_in_flight -= 1

    job.add_done_callback(done)


def _error_code(body: bytes) -> str:
    with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
        data = orjson.loads(body)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            return str(error.get("code"))
        if isinstance(data, dict) and "code" in data:
            return str(data["code"])
    return "?"


def member_names(count: int, prefix: str) -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(count)]


async def set_members(options: QueueOptions, users: list[str]) -> None:
    api = options.url.rstrip("/") + "/api/v1"
    connection = Connection(api, {"Authorization": f"Bearer {options.producer_key}"})
    try:
        answer = await connection.request("PUT", f"/roles/{ROLE}/members", {"members": users})
    finally:
        await connection.close()
    if answer.status != 200:
        raise RuntimeError(f"PUT /roles/{ROLE}/members -> {answer.status} {answer.body[:300]!r}")


async def open_member(
    ws_url: str, index: int, user: str, token: str, compression: Literal["deflate"] | None
) -> Member:
    async with asyncio.timeout(30):
        ws = await connect(
            ws_url,
            compression=compression,
            ping_interval=None,
            proxy=None,
            open_timeout=None,
            max_size=None,
        )
        try:
            await ws.send(orjson.dumps({"type": "auth", "token": token}), text=True)
            first = orjson.loads(await ws.recv(decode=False))
        except BaseException:
            await ws.close()
            raise
    feeds = first.get("feeds") if isinstance(first, dict) else None
    if first.get("type") != "snapshot" or not isinstance(feeds, dict) or ROLE_FEED not in feeds:
        await ws.close()
        raise ProtocolViolation(f"expected a snapshot with {ROLE_FEED}, got {str(first)[:200]}")
    role_seq = int(feeds[ROLE_FEED]["seq"])
    own_seq = int(first["seq"])
    auth = f"Authorization: Bearer {token}\r\n".encode()
    return Member(index, user, auth, ws, SeqCheck(role_seq, role_seq), SeqCheck(own_seq, own_seq))


async def connect_members(
    options: QueueOptions, result: QueueResult, users: list[str]
) -> list[Member]:
    ws_url = websocket_url(options.url)
    gate = asyncio.Semaphore(options.connect_concurrency)
    errors: Counter[str] = Counter()

    async def one(index: int) -> Member | None:
        user = users[index]
        async with gate:
            try:
                token = mint_token(options.secret, user)
                return await open_member(ws_url, index, user, token, options.compression)
            except CONNECT_ERRORS as exc:
                errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                return None

    began = time.monotonic()
    opened = await asyncio.gather(*(one(i) for i in range(len(users))))
    result.connect_s = time.monotonic() - began
    members = [m for m in opened if m is not None]
    result.connected = len(members)
    result.connect_failures = len(users) - len(members)
    result.connects_per_s = per_second(len(members), result.connect_s)
    result.error_samples += [f"{n} x {text}" for text, n in errors.most_common(5)]
    return members


async def drive_creates(options: QueueOptions, shared: Shared, result: QueueResult) -> int:
    """Create queue tasks at the target rate; returns the drive's start (ns)."""
    api = options.url.rstrip("/") + "/api/v1"
    auth = {"Authorization": f"Bearer {options.producer_key}"}
    connections = [Connection(api, auth) for _ in range(options.concurrency)]
    run_id = f"q{uuid.uuid4().hex[:8]}"
    interval_ns = int(1e9 / options.rate) if options.rate > 0 else 0
    slots = itertools.count()
    start = time.monotonic_ns()
    deadline = start + int(options.duration_s * 1e9)
    claimers = max(0, min(options.claimers, options.members))
    request_ns: list[int] = []
    last_ack = 0
    max_lag = 0

    async def worker(connection: Connection) -> None:
        nonlocal last_ack, max_lag
        while True:
            slot = next(slots)
            slot_at = start + slot * interval_ns
            now = time.monotonic_ns()
            if slot_at >= deadline or now >= deadline:
                return
            if slot_at > now:
                await asyncio.sleep((slot_at - now) / 1e9)
            elif interval_ns:
                max_lag = max(max_lag, now - slot_at)
                result.late_slots += now - slot_at > _LATE_NS
            task_id = f"{run_id}-{slot}"
            # Each task's racers: the next `claimers` members round-robin.
            racers = tuple((slot * claimers + j) % options.members for j in range(claimers))
            track = TaskTrack(slot, racers)
            body = {
                "id": task_id,
                "role": ROLE,
                "title": f"queue {slot}",
                "kind": "activity",
                "process": {"instance_id": f"p-{task_id}", "name": "Bench queue"},
                "record": None,
                "url": f"https://crm.example/tasks/{task_id}",
            }
            shared.tasks[task_id] = track
            result.creates_sent += 1
            track.create_sent_ns = sent = time.monotonic_ns()
            try:
                answer = await connection.request("POST", "/tasks", body)
            except HttpError as exc:
                result.creates_failed += 1
                shared.note_error(str(exc))
                continue
            done = time.monotonic_ns()
            request_ns.append(done - sent)
            last_ack = done
            if answer.status == 201:
                track.acked = True
                result.creates_acked += 1
            else:
                result.creates_failed += 1
                shared.note_error(f"POST /tasks -> {answer.status} {answer.body[:200]!r}")

    await asyncio.gather(*(worker(c) for c in connections))
    await asyncio.gather(*(c.close() for c in connections))
    result.drive_s = (last_ack - start) / 1e9 if last_ack else math.nan
    result.creates_per_s = per_second(result.creates_acked, result.drive_s)
    spread = summarize_ns(request_ns)
    result.create_request_p50_ms, result.create_request_p99_ms = spread.p50_ms, spread.p99_ms
    result.max_lag_ms = max_lag / 1e6
    return start


def expected_events(shared: Shared, members: list[Member]) -> int:
    n = len(members)
    total = 0
    for track in shared.tasks.values():
        if track.acked:
            total += n
            if 200 in track.claim_status.values():
                total += n + 1
    return total


async def settle(shared: Shared, members: list[Member], settle_s: float) -> None:
    """Until every expected event arrived and no claim is in flight, or nothing moved
    for ``settle_s``."""
    last_seen: tuple[int, int] = (-1, -1)
    last_progress = time.monotonic()
    while True:
        if shared.claims_in_flight == 0 and shared.events >= expected_events(shared, members):
            return
        progress = (shared.events, len(shared.claim_latency_ns))
        if progress != last_seen:
            last_seen, last_progress = progress, time.monotonic()
        elif time.monotonic() - last_progress > settle_s:
            return
        await asyncio.sleep(0.1)


def check(shared: Shared, members: list[Member], result: QueueResult, start_ns: int) -> None:
    n = len(members)
    by_index = {m.index: m for m in members}
    role_expected = own_expected = 0
    role_lost = own_lost = 0
    role_dup = 0
    removal: list[int] = []
    for track in shared.tasks.values():
        if not track.acked:
            continue
        role_expected += n
        role_lost += max(0, n - track.added_seen)
        role_dup += max(0, track.added_seen - n)
        wins = [m for m, s in track.claim_status.items() if s == 200]
        if not wins and track.claimers:
            result.tasks_unclaimed += 1
        if len(wins) > 1:
            result.tasks_several_winners += 1
        if not wins:
            continue
        result.tasks_claimed += 1
        role_expected += n
        role_lost += max(0, n - track.removed_seen)
        role_dup += max(0, track.removed_seen - n)
        winner = wins[0]
        own_expected += 1
        got = track.winner_user_added
        if winner in by_index and winner not in got:
            own_lost += 1
        result.wrong_claim_owner += sum(1 for m in got if m != winner)
        sent = track.claim_sent_ns[winner]
        removal.extend(t - sent for t in track.removed_ns)
    feeds = (ROLE_FEED, "user:*")
    result.expected = dict(zip(feeds, (role_expected, own_expected), strict=True))
    result.lost = dict(zip(feeds, (role_lost, own_lost), strict=True))
    dups = (
        role_dup + sum(m.role.duplicates for m in members),
        sum(m.own.duplicates for m in members),
    )
    result.duplicates = dict(zip(feeds, dups, strict=True))
    ooo = (sum(m.role.out_of_order for m in members), sum(m.own.out_of_order for m in members))
    result.out_of_order = dict(zip(feeds, ooo, strict=True))
    gaps = (sum(len(m.role.holes) for m in members), sum(len(m.own.holes) for m in members))
    result.seq_gaps = dict(zip(feeds, gaps, strict=True))
    result.count_mismatches = shared.count_mismatches
    result.unmatched_events = shared.unmatched
    codes: Counter[str] = Counter()
    for m in members:
        result.protocol_violations += len(m.violations)
        if m.closed:
            result.closed_by_server += 1
            codes[str(m.close_code)] += 1
    result.close_codes = dict(codes)
    result.error_samples += [v for m in members for v in m.violations][:3]
    result.claims_sent = len(shared.claim_latency_ns)
    result.claim_statuses = dict(sorted(shared.claim_statuses.items()))
    result.claims_other_answer = shared.claims_other
    claim = summarize_ns(shared.claim_latency_ns)
    result.claim_p50_ms, result.claim_p99_ms, result.claim_max_ms = (
        claim.p50_ms,
        claim.p99_ms,
        claim.max_ms,
    )
    created = summarize_ns(shared.create_latency_ns)
    result.create_p50_ms, result.create_p90_ms = created.p50_ms, created.p90_ms
    result.create_p99_ms, result.create_max_ms = created.p99_ms, created.max_ms
    removed = summarize_ns(removal)
    result.removal_p50_ms, result.removal_p99_ms = removed.p50_ms, removed.p99_ms
    result.removal_max_ms = removed.max_ms
    result.events_delivered = shared.events
    if shared.events:
        result.delivery_s = (shared.last_ns - start_ns) / 1e9
        result.deliveries_per_s = per_second(shared.events, result.delivery_s)
        result.e2e_tasks_per_s = per_second(result.creates_acked, result.delivery_s)
    result.error_samples += shared.error_samples


async def run(options: QueueOptions) -> QueueResult:
    result = QueueResult(
        label=options.label,
        members=options.members,
        rate_target=options.rate,
        duration_s=options.duration_s,
        claimers_per_task=options.claimers,
        compression=options.compression or "none",
        event_loop=options.loop,
    )
    server = psutil.Process(options.server_pid) if options.server_pid else None
    await wait_healthy(options.url)
    users = member_names(options.members, options.member_prefix)
    await set_members(options, users)
    result.rss_before_kb = rss_kb(server)
    members = await connect_members(options, result, users)
    shared = Shared()
    api = options.url.rstrip("/") + "/api/v1"
    # By default one claim connection per member and at least 256 (a browser has
    # several); only as many as are ever in flight at once get opened.
    claims = ClaimPool(api, options.claim_concurrency or max(256, options.members))
    spawned: set[asyncio.Task[None]] = set()
    readers = [asyncio.create_task(m.run(shared, claims, spawned)) for m in members]
    await asyncio.sleep(2.0)
    result.rss_after_connect_kb = rss_kb(server)

    meters = Meters(server)
    meters.start()
    start_ns = await drive_creates(options, shared, result)
    await settle(shared, members, options.settle_s)
    cpu = meters.read()
    result.loadgen_cpu_drive_pct, result.server_cpu_drive_pct = cpu.loadgen_pct, cpu.server_pct
    result.cores_drive, result.others_cpu_drive_pct = cpu.cores_text(), cpu.others_pct
    result.server_cpu_s = cpu.server_cpu_s
    check(shared, members, result, start_ns)
    result.claim_pool_wait_max_ms = claims.max_wait_ns / 1e6
    result.claim_retries = claims.retries
    if result.events_delivered:
        result.server_cpu_us_per_event = cpu.server_cpu_s * 1e6 / result.events_delivered
    if result.creates_acked:
        result.server_cpu_ms_per_task = cpu.server_cpu_s * 1e3 / result.creates_acked
    result.rss_after_drive_kb = rss_kb(server)

    for job in list(spawned):
        job.cancel()
    await asyncio.gather(*spawned, return_exceptions=True)
    await claims.close()
    gate = asyncio.Semaphore(500)

    async def close(m: Member) -> None:
        async with gate:
            with contextlib.suppress(*CONNECT_ERRORS):
                await asyncio.wait_for(m.ws.close(), 5)

    await asyncio.gather(*(close(m) for m in members))
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    return result


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def describe(r: QueueResult) -> str:
    feeds = ", ".join(
        f"{feed}: expected {r.expected.get(feed, 0)} lost {r.lost.get(feed, 0)} dup "
        f"{r.duplicates.get(feed, 0)} ooo {r.out_of_order.get(feed, 0)} gaps "
        f"{r.seq_gaps.get(feed, 0)}"
        for feed in (ROLE_FEED, "user:*")
    )
    lines = [
        f"== {r.label}: 1 role x {r.members} members online (one socket each), creates at "
        f"{r.rate_target:g}/s for {r.duration_s:g} s, {r.claimers_per_task} claimers racing "
        f"per task, loop {r.event_loop}, client compression {r.compression}",
        f"connect   {r.connected}/{r.members} in {_f(r.connect_s, 2)} s = "
        f"{_f(r.connects_per_s, 0)} connects/s; server RSS {_f(r.rss_before_kb / 1024)} MB "
        f"before, {_f(r.rss_after_connect_kb / 1024)} MB connected, "
        f"{_f(r.rss_after_drive_kb / 1024)} MB after",
        f"creates   {r.creates_acked} acked of {r.creates_sent} ({r.creates_failed} failed) in "
        f"{_f(r.drive_s, 2)} s = {_f(r.creates_per_s, 0)}/s; request p50 "
        f"{_f(r.create_request_p50_ms)} ms, p99 {_f(r.create_request_p99_ms)} ms; late slots "
        f"{r.late_slots}, max lag {_f(r.max_lag_ms)} ms",
        f"claims    {r.claims_sent} answered {r.claim_statuses}; race latency (request -> "
        f"answer) p50 {_f(r.claim_p50_ms, 2)} ms, p99 {_f(r.claim_p99_ms, 2)} ms, max "
        f"{_f(r.claim_max_ms, 2)} ms (longest wait for a free client connection before "
        f"that {_f(r.claim_pool_wait_max_ms, 1)} ms; sent again on a new connection "
        f"{r.claim_retries}); tasks claimed {r.tasks_claimed}, unclaimed "
        f"{r.tasks_unclaimed}, with several winners {r.tasks_several_winners}, other answers "
        f"{r.claims_other_answer}",
        f"delivery  {r.events_delivered} events in {_f(r.delivery_s, 2)} s = "
        f"{_f(r.deliveries_per_s, 0)} deliveries/s; tasks created+delivered "
        f"{_f(r.e2e_tasks_per_s, 0)}/s",
        f"latency   create->panel (task.added on {ROLE_FEED}, every member) p50 "
        f"{_f(r.create_p50_ms, 2)} ms, p90 {_f(r.create_p90_ms, 2)} ms, p99 "
        f"{_f(r.create_p99_ms, 2)} ms, max {_f(r.create_max_ms, 2)} ms",
        f"latency   winning claim->task.removed on every member p50 {_f(r.removal_p50_ms, 2)} "
        f"ms, p99 {_f(r.removal_p99_ms, 2)} ms, max {_f(r.removal_max_ms, 2)} ms",
        f"integrity {feeds}; count mismatches {r.count_mismatches}, unmatched "
        f"{r.unmatched_events}, user-feed claim on a loser {r.wrong_claim_owner}, closed by "
        f"server {r.closed_by_server}"
        + (f" (close codes {r.close_codes})" if r.close_codes else "")
        + f", protocol violations {r.protocol_violations}",
        f"cpu       loadgen {_f(r.loadgen_cpu_drive_pct, 0)}% of its core, server "
        f"{_f(r.server_cpu_drive_pct, 0)}%, other processes {_f(r.others_cpu_drive_pct, 0)}% "
        f"(drive until the last delivery); cores: {r.cores_drive}",
        f"server    CPU {_f(r.server_cpu_s, 2)} s = {_f(r.server_cpu_us_per_event, 1)} µs per "
        f"delivered event, {_f(r.server_cpu_ms_per_task, 2)} ms per queue task (create, "
        f"claims, all deliveries)",
    ]
    if r.loadgen_busy:
        lines.append(
            f"WARNING   the load generator used >= {BUSY_CPU_PCT:g}% of its core: figures "
            "may be limited by the load generator, not the server"
        )
    if r.machine_noisy:
        lines.append(
            f"WARNING   other processes used >= {NOISY_CPU_PCT:g}% of a core during the run: "
            "the machine was not quiet, figures are pessimistic"
        )
    lines += [f"error     {sample}" for sample in r.error_samples]
    return "\n".join(lines)


def _c(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"


def table(rows: list[QueueResult]) -> str:
    """One line per queue run, as ``bench.run`` prints its scenarios."""
    head = (
        "scenario",
        "members",
        "tasks/s",
        "e2e t/s",
        "deliv/s",
        "add p50",
        "add p99",
        "claim p50",
        "claim p99",
        "rm p99",
        "200/409",
        "lost",
        "dup",
        "ooo",
        "gen cpu%",
        "srv cpu%",
        "srv µs/ev",
    )
    body: list[tuple[str, ...]] = []
    for r in rows:
        ok = r.claim_statuses.get("200", 0)
        busy = r.claim_statuses.get("409 already_claimed", 0)
        body.append(
            (
                r.label,
                f"{r.connected}/{r.members}",
                _c(r.creates_per_s),
                _c(r.e2e_tasks_per_s),
                _c(r.deliveries_per_s),
                _c(r.create_p50_ms, 1),
                _c(r.create_p99_ms, 1),
                _c(r.claim_p50_ms, 1),
                _c(r.claim_p99_ms, 1),
                _c(r.removal_p99_ms, 1),
                f"{ok}/{busy}",
                str(r.lost_total),
                str(sum(r.duplicates.values())),
                str(sum(r.out_of_order.values())),
                _c(r.loadgen_cpu_drive_pct),
                _c(r.server_cpu_drive_pct),
                _c(r.server_cpu_us_per_event, 1),
            )
        )
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    return "\n".join(
        "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
        for row in [head, *body]
    )


def verdicts(r: QueueResult) -> list[str]:
    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    claims_ok = (
        r.tasks_several_winners == 0 and r.claims_other_answer == 0 and r.tasks_unclaimed == 0
    )
    return [
        f"{mark(r.integrity_problems == 0)} queue: zero lost/duplicate/out-of-order events "
        f"on every feed: {r.integrity_problems}",
        f"{mark(claims_ok)} queue: every claim answered 200 or 409 already_claimed, exactly "
        f"one 200 per task ({r.tasks_claimed} claimed, {r.tasks_unclaimed} without a winner, "
        f"{r.tasks_several_winners} with several, {r.claims_other_answer} other answers)",
    ]


def parse_args(argv: list[str] | None = None) -> QueueOptions:
    p = argparse.ArgumentParser(
        prog="python -m bench.rolequeue", description=__doc__.split("\n")[0]
    )
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--members", type=int, default=100, help="role members, one socket each")
    p.add_argument("--rate", type=float, default=200, help="queue tasks created per second")
    p.add_argument("--duration", type=float, default=10, help="seconds of creates")
    p.add_argument("--claimers", type=int, default=3, help="members racing to claim each task")
    p.add_argument("--concurrency", type=int, default=16, help="create requests in flight")
    p.add_argument(
        "--claim-concurrency",
        type=int,
        default=0,
        help="claim requests in flight at most (0: one per member, at least 256)",
    )
    p.add_argument("--connect-concurrency", type=int, default=200)
    p.add_argument("--producer-key", default=os.environ.get("TASKBELL_PRODUCER_KEY", ""))
    p.add_argument("--secret", default=os.environ.get("TASKBELL_SECRET", ""))
    p.add_argument("--server-pid", type=int, default=None)
    p.add_argument("--compression", choices=["deflate", "none"], default="deflate")
    p.add_argument("--settle", type=float, default=5.0, help="s to wait for late deliveries")
    p.add_argument("--label", default="queue")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    a = p.parse_args(argv)
    if not a.secret or not a.producer_key:
        p.error("--secret and --producer-key (or TASKBELL_SECRET, TASKBELL_PRODUCER_KEY) needed")
    if a.members < 1 or a.concurrency < 1 or a.claim_concurrency < 0 or a.rate <= 0:
        p.error("--members, --concurrency and --rate must be > 0, --claim-concurrency >= 0")
    return QueueOptions(
        url=a.url,
        members=a.members,
        rate=a.rate,
        duration_s=a.duration,
        claimers=a.claimers,
        concurrency=a.concurrency,
        claim_concurrency=a.claim_concurrency,
        connect_concurrency=a.connect_concurrency,
        producer_key=a.producer_key,
        secret=a.secret,
        server_pid=a.server_pid,
        compression="deflate" if a.compression == "deflate" else None,
        settle_s=a.settle,
        label=a.label,
        json_path=a.json,
        loop=a.loop,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    result, loop = run_in_loop(lambda: run(options), options.loop)
    result.event_loop = loop
    print(describe(result), flush=True)
    if options.json_path is not None:
        options.json_path.write_bytes(result.to_json())
    ok = result.connect_failures == 0 and result.integrity_problems == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
