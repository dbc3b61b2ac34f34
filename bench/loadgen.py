"""Taskbell load generator.

Phases:
1. open ``--connections`` WebSockets spread over ``--owners`` (socket i belongs to owner
   i mod U), each authenticating and waiting for its snapshot; connects/s is the number
   of sockets holding a snapshot divided by the wall time of the whole phase;
2. read the server's RSS (``--server-pid``, plus its children) before and after;
3. drive task changes (create, then complete) through the producer API for
   ``--duration`` seconds at ``--rate`` changes/s (0 = as fast as possible), one change
   per request or ``--batch-size`` per batch request; every socket timestamps what it
   receives, latency runs from the change's request being written to the event being
   read from the socket;
4. check the feeds: every socket must receive each acknowledged change of its owner
   exactly once, with contiguous seqs and the same count for the same seq.

Run ``python -m bench.loadgen --help``; ``python -m bench.run`` runs the scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import jwt
import psutil

from bench.changes import Workload, owner_names
from bench.feed import (
    CONNECT_ERRORS,
    DeliveryLog,
    Subscriber,
    open_subscriber,
    websocket_url,
)
from bench.meters import Meters, rss_kb
from bench.producer import DriveConfig, Ledger, Mode, drive
from bench.rawhttp import Connection, HttpError
from bench.report import LoadgenResult, describe
from bench.stats import per_second, summarize_ns

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Options:
    url: str
    connections: int
    owners: int
    rate: float
    duration_s: float
    mode: Mode
    batch_size: int
    concurrency: int
    connect_concurrency: int
    producer_key: str
    secret: str
    server_pid: int | None
    compression: Literal["deflate"] | None
    settle_s: float
    label: str
    json_path: Path | None
    loop: str
    owner_prefix: str = "bench-u"


def mint_token(secret: str, user: str, ttl_s: int = 24 * 3600) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm="HS256")


async def wait_healthy(base_url: str, timeout_s: float = 30.0) -> None:
    connection = Connection(base_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with contextlib.suppress(HttpError):
                if (await connection.request("GET", "/healthz")).status == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{base_url}/healthz did not answer 200 in {timeout_s} s")
            await asyncio.sleep(0.2)
    finally:
        await connection.close()


async def connect_all(
    options: Options, result: LoadgenResult
) -> tuple[list[Subscriber], list[str]]:
    owners = owner_names(options.owners, options.owner_prefix)
    tokens = {owner: mint_token(options.secret, owner) for owner in owners}
    ws_url = websocket_url(options.url)
    gate = asyncio.Semaphore(options.connect_concurrency)
    durations: list[int] = []
    errors: Counter[str] = Counter()

    async def one(index: int) -> Subscriber | None:
        owner = owners[index % len(owners)]
        async with gate:
            began = time.monotonic_ns()
            try:
                sub = await open_subscriber(ws_url, tokens[owner], owner, options.compression)
            except CONNECT_ERRORS as exc:
                errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
                return None
            durations.append(time.monotonic_ns() - began)
            return sub

    began = time.monotonic()
    opened = await asyncio.gather(*(one(i) for i in range(options.connections)))
    result.connect_s = time.monotonic() - began
    subscribers = [sub for sub in opened if sub is not None]
    result.connected = len(subscribers)
    result.connect_failures = options.connections - len(subscribers)
    result.connects_per_s = per_second(len(subscribers), result.connect_s)
    spread = summarize_ns(durations)
    result.connect_p50_ms, result.connect_p99_ms = spread.p50_ms, spread.p99_ms
    extensions = Counter(sub.negotiated_extensions or "none" for sub in subscribers)
    result.extensions = ", ".join(f"{name} x{n}" for name, n in extensions.most_common())
    return subscribers, [f"{n} x {text}" for text, n in errors.most_common(5)]


async def wait_for_deliveries(log: DeliveryLog, expected: int, settle_s: float) -> None:
    """Return once ``expected`` events arrived, or none arrived for ``settle_s``."""
    last_seen, last_progress = log.events, time.monotonic()
    while log.events < expected:
        await asyncio.sleep(0.05)
        if log.events != last_seen:
            last_seen, last_progress = log.events, time.monotonic()
        elif time.monotonic() - last_progress > settle_s:
            return


def check_feeds(subscribers: list[Subscriber], ledger: Ledger, result: LoadgenResult) -> None:
    codes: Counter[str] = Counter()
    for sub in subscribers:
        expected = ledger.expected.get(sub.owner, set())
        check = sub.check
        result.expected_deliveries += len(expected)
        result.lost += len(expected - check.received)
        result.duplicates += check.duplicates
        result.out_of_order += check.out_of_order
        result.seq_gaps += check.gap_seqs
        result.protocol_violations += len(sub.violations)
        if sub.closed:
            result.closed_by_server += 1
            codes[str(sub.close_code)] += 1
    result.close_codes = dict(codes)
    samples = [v for sub in subscribers for v in sub.violations][:3]
    result.error_samples += samples


async def run(options: Options) -> LoadgenResult:
    result = LoadgenResult(
        label=options.label,
        mode=options.mode,
        rate_target=options.rate,
        connections=options.connections,
        owners=options.owners,
        batch_size=options.batch_size if options.mode == "batch" else 1,
        concurrency=options.concurrency,
        duration_s=options.duration_s,
        compression=options.compression or "none",
        event_loop=options.loop,
    )
    server = psutil.Process(options.server_pid) if options.server_pid else None
    meters = Meters(server)
    await wait_healthy(options.url)

    # Phases 1 and 2: connect everyone, and weigh the server before and after.
    result.rss_before_kb = rss_kb(server)
    meters.start()
    subscribers, connect_errors = await connect_all(options, result)
    cpu = meters.read()
    result.loadgen_cpu_connect_pct, result.server_cpu_connect_pct = cpu.loadgen_pct, cpu.server_pct
    result.cores_connect, result.others_cpu_connect_pct = cpu.cores_text(), cpu.others_pct
    if result.connected:
        result.server_cpu_ms_per_connect = cpu.server_cpu_s * 1000 / result.connected
    result.error_samples += connect_errors
    ledger = Ledger()
    log = DeliveryLog(ledger.sent_ns)
    readers = [asyncio.create_task(sub.run(log)) for sub in subscribers]
    await asyncio.sleep(2.0)  # let the server settle (and free handshake buffers)
    result.rss_after_connect_kb = rss_kb(server)
    if subscribers:
        grown_kb = result.rss_after_connect_kb - result.rss_before_kb
        result.kb_per_connection = grown_kb / len(subscribers)

    # Phase 3: drive changes.
    if options.duration_s > 0:
        await drive_changes(options, ledger, result, meters)
        expected = sum(len(ledger.expected.get(sub.owner, ())) for sub in subscribers)
        await wait_for_deliveries(log, expected, options.settle_s)
        summarize_deliveries(log, ledger, result)
        # Phase 4: integrity.
        check_feeds(subscribers, ledger, result)
    result.rss_after_drive_kb = rss_kb(server)

    await close_all(subscribers, readers)
    return result


async def drive_changes(
    options: Options,
    ledger: Ledger,
    result: LoadgenResult,
    meters: Meters,
) -> None:
    owners = owner_names(options.owners, options.owner_prefix)
    workload = Workload(owners, run_id=f"b{uuid.uuid4().hex[:8]}")
    api = options.url.rstrip("/") + "/api/v1"
    auth = {"Authorization": f"Bearer {options.producer_key}"}
    connections = [Connection(api, auth) for _ in range(options.concurrency)]
    config = DriveConfig(
        options.mode, options.rate, options.duration_s, options.batch_size, options.concurrency
    )
    meters.start()
    await drive(config, workload, connections, ledger)
    cpu = meters.read()
    result.loadgen_cpu_drive_pct, result.server_cpu_drive_pct = cpu.loadgen_pct, cpu.server_pct
    result.cores_drive, result.others_cpu_drive_pct = cpu.cores_text(), cpu.others_pct
    if ledger.acked:
        result.server_cpu_ms_per_change = cpu.server_cpu_s * 1000 / ledger.acked
    await asyncio.gather(*(c.close() for c in connections))
    result.requests = ledger.requests
    result.changes_acked = ledger.acked
    result.changes_failed = ledger.failed
    result.transport_errors = ledger.transport_errors
    result.drive_s = (ledger.last_ack_ns - ledger.start_ns) / 1e9 if ledger.last_ack_ns else 0.0
    result.changes_per_s = per_second(ledger.acked, result.drive_s)
    requests = summarize_ns(ledger.request_ns)
    result.request_p50_ms, result.request_p99_ms = requests.p50_ms, requests.p99_ms
    result.late_slots = ledger.late_slots
    result.max_lag_ms = ledger.max_lag_ns / 1e6
    result.status_counts = {str(k): v for k, v in sorted(ledger.statuses.items())}
    result.error_samples += ledger.error_samples


def summarize_deliveries(log: DeliveryLog, ledger: Ledger, result: LoadgenResult) -> None:
    result.events_delivered = log.events
    result.unmatched_events = log.unmatched
    result.count_mismatches = log.count_mismatches
    if log.events:
        result.delivery_s = (log.last_ns - ledger.start_ns) / 1e9
        result.events_per_s = per_second(log.events, result.delivery_s)
        result.e2e_changes_per_s = per_second(ledger.acked, result.delivery_s)
    latency = summarize_ns(log.latencies_ns)
    result.latency_p50_ms, result.latency_p90_ms = latency.p50_ms, latency.p90_ms
    result.latency_p99_ms, result.latency_max_ms = latency.p99_ms, latency.max_ms


async def close_all(subscribers: list[Subscriber], readers: list[asyncio.Task[None]]) -> None:
    gate = asyncio.Semaphore(500)

    async def close(sub: Subscriber) -> None:
        async with gate:
            with contextlib.suppress(*CONNECT_ERRORS):
                await asyncio.wait_for(sub.close(), 5)

    await asyncio.gather(*(close(sub) for sub in subscribers))
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    p.add_argument("--connections", type=int, default=500, help="WebSockets to open (N)")
    p.add_argument("--owners", type=int, default=100, help="distinct owners (U)")
    p.add_argument(
        "--owner-prefix",
        default="bench-u",
        help="owner names (two load generators on one database use different ones)",
    )
    p.add_argument("--rate", type=float, default=0, help="changes/s; 0 = as fast as possible")
    p.add_argument("--duration", type=float, default=10, help="seconds of changes; 0 = none")
    p.add_argument("--mode", choices=["single", "batch"], default="single")
    p.add_argument("--batch-size", type=int, default=100, help="changes per batch request")
    p.add_argument("--concurrency", type=int, default=32, help="HTTP requests in flight")
    p.add_argument("--connect-concurrency", type=int, default=200, help="handshakes in flight")
    p.add_argument("--producer-key", default=os.environ.get("TASKBELL_PRODUCER_KEY", ""))
    p.add_argument("--secret", default=os.environ.get("TASKBELL_SECRET", ""))
    p.add_argument("--server-pid", type=int, default=None, help="for RSS and CPU figures")
    p.add_argument(
        "--compression",
        choices=["deflate", "none"],
        default="deflate",
        help="offer permessage-deflate like browsers do (default), or not",
    )
    p.add_argument("--settle", type=float, default=5.0, help="s to wait for late deliveries")
    p.add_argument("--label", default="")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    a = p.parse_args(argv)
    if not a.secret or not a.producer_key:
        p.error("--secret and --producer-key (or TASKBELL_SECRET, TASKBELL_PRODUCER_KEY) needed")
    if a.owners < 1 or a.connections < 1 or a.concurrency < 1 or a.batch_size < 1:
        p.error("--owners, --connections, --concurrency and --batch-size must be >= 1")
    return Options(
        url=a.url,
        connections=a.connections,
        owners=a.owners,
        rate=a.rate,
        duration_s=a.duration,
        mode=a.mode,
        batch_size=a.batch_size,
        concurrency=a.concurrency,
        connect_concurrency=a.connect_concurrency,
        producer_key=a.producer_key,
        secret=a.secret,
        server_pid=a.server_pid,
        compression="deflate" if a.compression == "deflate" else None,
        settle_s=a.settle,
        label=a.label,
        json_path=a.json,
        loop=a.loop,
        owner_prefix=a.owner_prefix,
    )


def run_in_loop(main: Callable[[], Coroutine[Any, Any, T]], loop: str) -> tuple[T, str]:
    """Run ``main`` on uvloop when asked and installed, else on asyncio's own loop."""
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("uvloop is not installed; using the asyncio event loop", file=sys.stderr)
        else:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(main()), "uvloop"
    return asyncio.run(main()), "asyncio"


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    result, loop = run_in_loop(lambda: run(options), options.loop)
    result.event_loop = loop
    print(describe(result), flush=True)
    if options.json_path is not None:
        options.json_path.write_bytes(result.to_json())
    ok = result.connect_failures == 0 and result.lost == 0 and result.changes_failed == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
