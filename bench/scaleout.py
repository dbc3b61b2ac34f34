"""Scale-out benches: several Taskbell instances on one Redis (or Redis Cluster) and one
PostgreSQL, all started here (like the tests start them).

``fanout``: does an instance's CPU per delivered event stay flat as instances are added?
One *writer* instance takes every change (and holds no socket); ``N`` *listener*
instances hold the sockets, each the owners of its own partitions (owner ``o`` on
listener ``partition_of(o) % N``, as a load balancer routing by owner would place
them). The writer creates tasks at ``--rate`` per second over all owners, so the whole
cluster's event rate is the same for every ``N`` while each listener delivers ``1/N`` of
it. With per-partition subscriptions a listener receives only its own owners' events,
so its CPU per delivered event should not grow with ``N`` (with the old pattern
subscription every listener decoded every event).

    python -m bench.scaleout fanout --instances 1,2,4 --rate 400 --duration 15
    python -m bench.scaleout fanout --cluster ...     # on a three-master Redis Cluster

``postgres``: ``N`` instances on one PostgreSQL, each driven by its own load generator
(``bench.loadgen``, one change per request, as fast as it answers) over its own owners,
all at once: changes/s per instance and in total.

    python -m bench.scaleout postgres --instances 1,2 --duration 15

Figures are CPU time read from /proc (psutil) and counts, never wall-clock latency, so
a busy machine slows them down but skews them less; run them on a quiet machine all
the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil
import websockets

from bench.rawhttp import Connection
from bench.serverproc import REPO
from tests.support.app import PRODUCER_KEY, SECRET, token
from tests.support.server_proc import ServerProcess
from tests.support.services import PostgresServer, RedisCluster, RedisServer

try:
    from server.broker.partitions import partition_of
except ImportError:  # a checkout from before partitions, for the "before" figure
    import zlib

    def partition_of(key: str) -> int:
        return zlib.crc32(key.encode()) % 256


def cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def tree_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of a process and each of its children (PostgreSQL's backends)."""
    root = psutil.Process(pid)
    out: dict[int, float] = {}
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        out[proc.pid] = float(times.user + times.system)
    return out


def instance_env(db_url: str, redis_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
        "LOG_LEVEL": "warning",
    }


def start_all(servers: Sequence[ServerProcess]) -> None:
    servers[0].start()
    servers[0].wait_ready(60)  # migrates alone
    for s in servers[1:]:
        s.start()
    for s in servers[1:]:
        s.wait_ready(60)


# ---------------------------------------------------------------- fanout


@dataclass
class ListenerFigures:
    sockets: int
    owners: int
    events: int
    cpu_s: float
    idle_cpu_s: float  # the same instance's CPU over an idle window as long as the drive

    @property
    def us_per_event(self) -> float:
        return 1e6 * self.cpu_s / self.events if self.events else float("nan")

    @property
    def net_us_per_event(self) -> float:
        """Over idle: what the events themselves cost (not sweeps and heartbeats)."""
        net = self.cpu_s - self.idle_cpu_s
        return 1e6 * net / self.events if self.events else float("nan")


async def count_events(ws_url: str, owner: str, counter: list[int], ready: asyncio.Event) -> None:
    async with websockets.connect(ws_url, compression=None, max_size=None) as ws:
        await ws.send(orjson.dumps({"type": "auth", "token": token(owner, 3600)}).decode())
        first = orjson.loads(await ws.recv())
        assert first["type"] == "snapshot", first
        ready.set()
        async for raw in ws:
            if b'"task.' in (raw if isinstance(raw, bytes) else raw.encode()):
                counter[0] += 1


async def fanout_once(
    n: int, db_url: str, redis_url: str, args: argparse.Namespace
) -> tuple[list[ListenerFigures], float, int]:
    env = instance_env(db_url, redis_url)
    writer = ServerProcess(env)
    listeners = [ServerProcess(env) for _ in range(n)]
    try:
        await asyncio.to_thread(start_all, [writer, *listeners])
        owners = [f"fan-{n}-{i:05d}" for i in range(args.owners)]
        placed: list[list[str]] = [[] for _ in range(n)]
        for owner in owners:
            placed[partition_of(owner) % n].append(owner)
        counters = [[0] for _ in range(n)]
        readers: list[asyncio.Task[None]] = []
        for i, group in enumerate(placed):
            for owner in group:
                for _ in range(args.sockets_per_owner):
                    ready = asyncio.Event()
                    readers.append(
                        asyncio.create_task(
                            count_events(listeners[i].ws_url, owner, counters[i], ready)
                        )
                    )
                    await ready.wait()
        await asyncio.sleep(2)  # subscriptions settle; the start-up resyncs are done
        idle_before = [cpu_s(s.pid) for s in listeners]
        await asyncio.sleep(args.duration + 2)
        idle = [cpu_s(s.pid) - b for s, b in zip(listeners, idle_before, strict=True)]
        for c in counters:
            c[0] = 0
        before = [cpu_s(s.pid) for s in listeners]
        writer_before = cpu_s(writer.pid)
        api = Connection(writer.base_url + "/api/v1", {"Authorization": f"Bearer {PRODUCER_KEY}"})
        sent = 0
        began = time.monotonic()
        interval = 1.0 / args.rate
        while (elapsed := time.monotonic() - began) < args.duration:
            owner = owners[sent % len(owners)]
            body = {
                "id": f"fan-{n}-{sent}",
                "owner": owner,
                "title": "bench",
                "kind": "activity",
                "process": {"instance_id": f"p-{sent}", "name": "Bench"},
                "record": None,
                "url": "https://crm.example/t",
            }
            resp = await api.request("POST", "/tasks", body)
            if resp.status != 201:
                raise RuntimeError(f"create answered {resp.status}: {resp.body[:200]!r}")
            sent += 1
            ahead = sent * interval - elapsed
            if ahead > 0:
                await asyncio.sleep(ahead)
        await asyncio.sleep(2)  # the last deliveries
        after = [cpu_s(s.pid) for s in listeners]
        writer_cpu = cpu_s(writer.pid) - writer_before
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        figures = [
            ListenerFigures(
                sockets=len(placed[i]) * args.sockets_per_owner,
                owners=len(placed[i]),
                events=counters[i][0],
                cpu_s=after[i] - before[i],
                idle_cpu_s=idle[i],
            )
            for i in range(n)
        ]
        return figures, writer_cpu, sent
    finally:
        for s in [writer, *listeners]:
            s.close()


async def fanout(args: argparse.Namespace) -> int:
    sizes = [int(x) for x in args.instances.split(",")]
    with PostgresServer() as pg:
        pg.start()
        redis: RedisServer | RedisCluster = RedisCluster() if args.cluster else RedisServer()
        with redis:
            redis.start()
            rows = []
            for n in sizes:
                db_url = pg.create_database()
                print(f"--- {n} listener instance(s) + 1 writer", flush=True)
                figures, writer_cpu, sent = await fanout_once(n, db_url, redis.url, args)
                rows.append((n, figures, writer_cpu, sent))
    kind = "Redis Cluster (3 masters)" if args.cluster else "one Redis"
    print(
        f"\n=== fan-out on {kind}: {args.owners} owners x {args.sockets_per_owner} sockets, "
        f"{args.rate:.0f} changes/s for {args.duration:.0f} s through one writer instance"
    )
    print(
        "listeners  listener  owners  sockets  events  cpu s  idle s  us/event  net us/event"
        "  (writer cpu s, sent)"
    )
    summary = {}
    for n, figures, writer_cpu, sent in rows:
        for i, f in enumerate(figures):
            tail = f"  ({writer_cpu:.2f}, {sent})" if i == 0 else ""
            print(
                f"{n:>9}  {i:>8}  {f.owners:>6}  {f.sockets:>7}  {f.events:>6}  "
                f"{f.cpu_s:>5.2f}  {f.idle_cpu_s:>6.2f}  {f.us_per_event:>8.1f}  "
                f"{f.net_us_per_event:>12.1f}{tail}"
            )
        events = sum(f.events for f in figures)
        cpu = sum(f.cpu_s for f in figures)
        net = cpu - sum(f.idle_cpu_s for f in figures)
        summary[n] = (1e6 * cpu / events, 1e6 * net / events) if events else (0.0, 0.0)
    print("\nCPU per delivered event, all listeners together (flat = linear scale-out):")
    base = summary[sizes[0]]
    for n in sizes:
        raw, net = summary[n]
        print(
            f"  {n} listener(s): {raw:.1f} us/event ({raw / base[0]:.2f}x), "
            f"over idle {net:.1f} us/event ({net / base[1]:.2f}x)"
        )
    args.summary = summary
    return 0


# ---------------------------------------------------------------- postgres


LOCK_WAITS = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
    "AND datname = current_database()"
)


def postgres_once(pg: PostgresServer, redis: RedisServer, n: int, args: argparse.Namespace) -> str:
    name = f"pgbench_{n}_{int(time.time())}"
    env = instance_env(pg.create_database(name), redis.url)
    servers = [ServerProcess(env) for _ in range(n)]
    out = Path(tempfile.mkdtemp(prefix="taskbell-pgbench-"))
    try:
        start_all(servers)
        assert pg.pid is not None
        pg_before = tree_cpu_s(pg.pid)
        procs = []
        for i, server in enumerate(servers):
            argv = [sys.executable, "-m", "bench.loadgen", "--url", server.base_url]
            argv += ["--connections", str(args.connections), "--owners", str(args.owners)]
            argv += ["--owner-prefix", f"pg{i}-u", "--rate", "0"]
            argv += ["--duration", str(args.duration), "--mode", args.mode]
            argv += ["--concurrency", str(args.concurrency), "--compression", "none"]
            argv += ["--server-pid", str(server.pid), "--label", f"instance-{i}"]
            argv += ["--json", str(out / f"{i}.json")]
            child_env = dict(os.environ, TASKBELL_SECRET=SECRET)
            child_env["TASKBELL_PRODUCER_KEY"] = PRODUCER_KEY
            child_env["PYTHONPATH"] = str(REPO)
            child_env["PYTHONWARNINGS"] = "ignore"
            procs.append(subprocess.Popen(argv, env=child_env, stdout=subprocess.DEVNULL))
        # Sessions waiting on a lock, sampled while the load generators run: owners of
        # different instances never share a feed row, so this should stay at 0.
        samples, waiting = 0, 0
        while any(proc.poll() is None for proc in procs):
            samples += 1
            waiting = max(waiting, int(pg.psql(LOCK_WAITS, database=name).strip() or 0))
            time.sleep(0.5)
        pg_after = tree_cpu_s(pg.pid)
        pg_cpu = sum(v - pg_before.get(k, 0.0) for k, v in pg_after.items())
        results = [json.loads((out / f"{i}.json").read_text()) for i in range(n)]
    finally:
        for s in servers:
            s.close()
    acked = sum(int(r.get("changes_acked", 0) or 0) for r in results)
    lines = [f"--- {n} instance(s), {args.mode} changes, each its own {args.owners} owners"]
    lines.append("instance  changes/s  e2e ch/s  lost  srv cpu%")
    total = 0.0
    for i, r in enumerate(results):
        total += float(r.get("e2e_changes_per_s", 0.0))
        lines.append(
            f"{i:>8}  {r.get('changes_per_s', 0):>9,.0f}  {r.get('e2e_changes_per_s', 0):>8,.0f}"
            f"  {r.get('lost', '?'):>4}  {r.get('server_cpu_drive_pct', 0):>7,.0f}"
        )
    lines.append(f"   total             {total:>8,.0f}")
    lines.append(f"   sessions waiting on a lock: at most {waiting} in {samples} samples")
    if acked:
        per = 1000 * pg_cpu / acked
        lines.append(f"   PostgreSQL CPU: {pg_cpu:.2f} s for {acked} changes = {per:.3f} ms/change")
    return "\n".join(lines)


def postgres(args: argparse.Namespace) -> int:
    with PostgresServer() as pg, RedisServer() as redis:
        pg.start()
        redis.start()
        reports = [postgres_once(pg, redis, int(n), args) for n in args.instances.split(",")]
    print("\n=== instances on one PostgreSQL (and one Redis)")
    for report in reports:
        print(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="bench", required=True)
    f = sub.add_parser("fanout", help="CPU per delivered event with 1, 2, 4 instances")
    f.add_argument("--instances", default="1,2,4", help="listener counts to run, in order")
    f.add_argument("--owners", type=int, default=256)
    f.add_argument("--sockets-per-owner", type=int, default=2)
    f.add_argument("--rate", type=float, default=300, help="changes/s through the writer")
    f.add_argument("--duration", type=float, default=15)
    f.add_argument("--cluster", action="store_true", help="a three-master Redis Cluster")
    f.add_argument("--json", default="")
    g = sub.add_parser("postgres", help="changes/s with N instances on one PostgreSQL")
    g.add_argument("--instances", default="1,2", help="instance counts to run, in order")
    g.add_argument("--connections", type=int, default=500)
    g.add_argument("--owners", type=int, default=100)
    g.add_argument("--duration", type=float, default=15)
    g.add_argument("--mode", choices=["single", "batch"], default="single")
    g.add_argument("--concurrency", type=int, default=32)
    args = p.parse_args(argv)
    if args.bench == "postgres":
        return postgres(args)
    code = asyncio.run(fanout(args))
    if args.json:
        Path(args.json).write_text(json.dumps({str(k): v for k, v in args.summary.items()}))
    return code


if __name__ == "__main__":
    sys.exit(main())
