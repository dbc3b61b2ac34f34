"""Drive the producer API at a target rate and keep the ledger of what was changed.

Two paths: one change per request (``POST /tasks`` or ``POST /tasks/{id}/complete``),
or ``POST /tasks/batch`` with ``batch_size`` changes per request. ``concurrency``
workers each own one keep-alive connection. With a target rate, request slot ``i``
starts at ``t0 + i * changes_per_request / rate``; a worker that is late starts at once
and the lateness is recorded (so a server that cannot keep up shows as lag and a lower
achieved rate, never as a longer run). With rate 0 the workers send back to back.

Every change's send time is stamped just before its request is written; for a batch
all its changes share the batch's send time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from bench.changes import BatchOp, Change, EventKey, Workload
from bench.rawhttp import Connection, HttpError

Mode = Literal["single", "batch"]
_LATE_NS = 5_000_000  # a slot starting more than 5 ms after its time counts as late
_SUCCESS = {"create": 201, "complete": 200}


@dataclass(slots=True)
class Ledger:
    """What the producer did: send times, acknowledgements, failures."""

    sent_ns: dict[EventKey, int] = field(default_factory=dict)
    expected: dict[str, set[EventKey]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    request_ns: list[int] = field(default_factory=list)
    requests: int = 0
    acked: int = 0
    failed: int = 0
    transport_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    late_slots: int = 0
    max_lag_ns: int = 0
    start_ns: int = 0
    last_ack_ns: int = 0

    def settle(self, workload: Workload, change: Change, status: int) -> None:
        self.statuses[status] += 1
        ok = status == _SUCCESS[change.kind]
        workload.acknowledge(change, ok)
        if ok:
            self.acked += 1
            self.expected.setdefault(change.owner, set()).add(change.event_key)
        else:
            self.failed += 1

    def note_error(self, text: str) -> None:
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])


@dataclass(frozen=True, slots=True)
class DriveConfig:
    mode: Mode
    rate: float  # changes per second; 0 = as fast as possible
    duration_s: float
    batch_size: int
    concurrency: int


async def drive(
    config: DriveConfig, workload: Workload, connections: list[Connection], ledger: Ledger
) -> None:
    """Send changes for ``duration_s``, then wait for the requests in flight."""
    per_request = 1 if config.mode == "single" else config.batch_size
    interval_ns = int(per_request / config.rate * 1e9) if config.rate > 0 else 0
    slots = itertools.count()
    start = ledger.start_ns = time.monotonic_ns()
    deadline = start + int(config.duration_s * 1e9)
    send = _send_single if config.mode == "single" else _send_batch

    async def worker(connection: Connection) -> None:
        while True:
            slot_at = start + next(slots) * interval_ns
            now = time.monotonic_ns()
            if slot_at >= deadline or now >= deadline:
                return
            if slot_at > now:
                await asyncio.sleep((slot_at - now) / 1e9)
            elif interval_ns:
                lag = now - slot_at
                ledger.max_lag_ns = max(ledger.max_lag_ns, lag)
                ledger.late_slots += lag > _LATE_NS
            await send(connection, workload, ledger, per_request)

    await asyncio.gather(*(worker(c) for c in connections[: config.concurrency]))


async def _send_single(
    connection: Connection, workload: Workload, ledger: Ledger, _per_request: int
) -> None:
    change = workload.next_change()
    method, path, body = change.request()
    sent = time.monotonic_ns()
    ledger.sent_ns[change.event_key] = sent
    ledger.requests += 1
    try:
        response = await connection.request(method, path, body)
    except HttpError as exc:
        ledger.transport_errors += 1
        ledger.note_error(str(exc))
        ledger.settle(workload, change, 0)
        return
    done = time.monotonic_ns()
    ledger.request_ns.append(done - sent)
    ledger.last_ack_ns = done
    if response.status >= 400:
        ledger.note_error(f"{method} {path} -> {response.status} {response.body[:200]!r}")
    ledger.settle(workload, change, response.status)


async def _send_batch(
    connection: Connection, workload: Workload, ledger: Ledger, per_request: int
) -> None:
    changes = [workload.next_change() for _ in range(per_request)]
    ops: list[BatchOp] = [change.batch_op() for change in changes]
    sent = time.monotonic_ns()
    for change in changes:
        ledger.sent_ns[change.event_key] = sent
    ledger.requests += 1
    try:
        response = await connection.request("POST", "/tasks/batch", {"ops": ops})
    except HttpError as exc:
        ledger.transport_errors += 1
        ledger.note_error(str(exc))
        for change in changes:
            ledger.settle(workload, change, 0)
        return
    done = time.monotonic_ns()
    ledger.request_ns.append(done - sent)
    ledger.last_ack_ns = done
    statuses = _batch_statuses(response.status, response.json(), len(changes))
    if statuses is None:
        ledger.note_error(f"POST /tasks/batch -> {response.status} {response.body[:300]!r}")
        statuses = [response.status if response.status >= 400 else 0] * len(changes)
    for change, status in zip(changes, statuses, strict=True):
        if status >= 400:
            ledger.note_error(f"batch op {change.kind} {change.task_id} -> {status}")
        ledger.settle(workload, change, status)


def _batch_statuses(http_status: int, body: object, expected: int) -> list[int] | None:
    """Per-op statuses of a batch answer, or None if it is not a well-formed 200."""
    if http_status != 200 or not isinstance(body, dict):
        return None
    results = body.get("results")
    if not isinstance(results, list) or len(results) != expected:
        return None
    statuses: list[int] = []
    for result in results:
        status = result.get("status") if isinstance(result, dict) else None
        if not isinstance(status, int):
            return None
        statuses.append(status)
    return statuses
