"""Soak: the chaos mix of tests/faults/test_chaos.py for minutes, with memory and file
descriptors of every server process sampled over time.

    python -m bench.soak --minutes 5
    python -m bench.soak --minutes 30 --rate 200 --json soak.json

It starts its own Redis and PostgreSQL (as the tests do), ``--instances`` server
processes and ``--clients`` resuming WebSocket clients over ``--owners`` people in each
of two tenants (the same user, role and task ids in both), then runs the chaos test's
operations (tasks for people and role queues, claims and claim races, unclaims,
membership changes, a substitution starting and ending in every round, one deleted) at
``--rate`` per second while a fault happens every
``--fault-every`` seconds, in turn: Redis killed, an instance restarted with SIGTERM,
Redis paused, an instance killed with SIGKILL, Redis emptied (FLUSHALL). Instance 0 is
never restarted: its memory and descriptors over the whole run are the leak witness.

At the end it checks what the chaos test checks (every client against the database,
feed by feed and event by event, following the feeds the database says; nothing
acknowledged lost; one winner per claim race) and prints the samples and the verdict.
Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from server.auth import mint_token
from tests.faults.chaos import (
    Cluster,
    ResumingClient,
    Workload,
    WorkloadFigures,
    check_writes,
    compare,
    producer_keys_setting,
    settle,
    two_tenants,
)
from tests.support.services import PostgresServer, RedisServer

SECRET = "soak-secret-0123456789abcdef0123456789abcdef"
PRODUCER_KEY = "pk-soak"
OTHER_KEY = "pk-soak-acme"
FAULTS = ("redis-kill", "sigterm", "redis-pause", "sigkill", "redis-flushall")


@dataclass
class Sample:
    t: float
    # per instance: (pid, RSS MB, open fds, threads, sockets it holds)
    instances: list[tuple[int, float, int, int, int]]
    driver_rss_mb: float
    ops: int


@dataclass
class Soak:
    samples: list[Sample] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    figures: list[WorkloadFigures] = field(default_factory=list)


def tokens(tenant: str) -> Callable[[str], str]:
    return lambda user: mint_token(SECRET, user, 24 * 3600, tenant=tenant)


async def sample(cluster: Cluster, http: httpx.AsyncClient, t0: float, ops: int) -> Sample:
    rows = []
    for server in cluster.servers:
        try:
            proc = psutil.Process(server.pid)
            rss = proc.memory_info().rss / 1e6
            fds, threads = proc.num_fds(), proc.num_threads()
        except (psutil.Error, RuntimeError):
            rss, fds, threads = 0.0, 0, 0
        try:
            ready = (await http.get(server.base_url + "/readyz", timeout=3)).json()
            conns = int(ready.get("connections", 0))
        except (httpx.HTTPError, ValueError):
            conns = -1
        rows.append((server.pid, rss, fds, threads, conns))
    me = psutil.Process().memory_info().rss / 1e6
    return Sample(time.monotonic() - t0, rows, me, ops)


async def fault_loop(cluster: Cluster, every: float, stop: asyncio.Event, soak: Soak) -> None:
    n = len(cluster.servers)
    i = restarts = 0
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every)
            return
        except TimeoutError:
            pass
        kind = FAULTS[i % len(FAULTS)]
        began = time.monotonic()
        if kind == "redis-kill":
            entry = await cluster.redis_outage("kill", 1.5)
        elif kind == "redis-pause":
            entry = await cluster.redis_outage("pause", 2.0)
        elif kind == "redis-flushall":
            entry = await cluster.redis_outage("flushall", 0.5)
        elif n > 1:
            restarts += 1
            victim = 1 + restarts % (n - 1)  # never instance 0
            how = "term" if kind == "sigterm" else "kill"
            status = await cluster.restart(victim, how)
            entry = {"how": kind, "instance": victim, "exit": status}
        else:
            entry = {"how": kind, "skipped": "only one instance"}
        entry["took_s"] = round(time.monotonic() - began, 2)
        soak.faults.append(entry)
        print(f"  fault {len(soak.faults)}: {entry}", flush=True)
        i += 1


async def run(args: argparse.Namespace) -> tuple[bool, dict[str, Any]]:
    # SIGTERM ends the run like Ctrl-C: the servers, Redis and PostgreSQL are stopped.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    owners = [f"owner-{i:03d}" for i in range(args.owners)]
    plans = two_tenants(owners, PRODUCER_KEY, OTHER_KEY)
    people = [(p.tenant, o) for o in owners for p in plans]
    soak = Soak()
    with PostgresServer() as pg, RedisServer() as redis:
        pg.start()
        redis.start()
        env = {
            "TASKBELL_SECRET": SECRET,
            "TASKBELL_PRODUCER_KEYS": producer_keys_setting(plans),
            "TASKBELL_SWEEP_SECONDS": str(args.sweep),
            "LOG_LEVEL": "warning",
        }
        cluster = Cluster(redis, pg.url, args.instances, env)
        try:
            await cluster.start()
            clients = [
                ResumingClient(user, tokens(tenant)(user), cluster.ws_urls, i, tenant)
                for i, (tenant, user) in ((i, people[i % len(people)]) for i in range(args.clients))
            ]
            for c in clients:
                c.start()
            await asyncio.gather(*(c.wait_connected(60) for c in clients))
            print(
                f"soak: {args.instances} instances, {args.clients} clients over "
                f"{args.owners} people in each of {len(plans)} tenants, {args.rate} ops/s for "
                f"{args.minutes} min, a fault "
                f"every {args.fault_every} s",
                flush=True,
            )
            t0 = time.monotonic()
            stop = asyncio.Event()
            faults = asyncio.create_task(fault_loop(cluster, args.fault_every, stop, soak))
            works: list[Workload] = []
            latest: list[Workload] = []
            ops = 0
            async with httpx.AsyncClient() as http:
                soak.samples.append(await sample(cluster, http, t0, ops))
                print_sample(soak.samples[-1], header=True)
                round_s = args.sample_every
                deadline = t0 + args.minutes * 60
                rounds = 0
                while time.monotonic() < deadline:
                    if faults.done():
                        faults.result()  # a fault that could not be carried out stops the run
                    rounds += 1
                    seed = random.randrange(1 << 30)
                    latest = [
                        Workload(
                            cluster.base_urls,
                            owners,
                            producer_key=p.producer_key,
                            token=tokens(p.tenant),
                            total=max(1, int(args.rate * round_s * p.share)),
                            duration_s=round_s,
                            seed=seed + n,
                            prefix=f"r{rounds}-",  # the same task ids in both tenants
                            tenant=p.tenant,
                            roles=p.roles,
                            absences=p.absences,
                        )
                        for n, p in enumerate(plans)
                    ]
                    await asyncio.gather(*(w.run() for w in latest))
                    works += latest
                    soak.figures += [w.figures for w in latest]
                    ops += sum(w.figures.ops for w in latest)
                    soak.samples.append(await sample(cluster, http, t0, ops))
                    print_sample(soak.samples[-1])
            stop.set()
            await faults
            truth = await settle(pg.url, clients, latest)
            for c in clients:
                await c.stop()
            async with httpx.AsyncClient() as http:
                soak.samples.append(await sample(cluster, http, t0, ops))
            print_sample(soak.samples[-1])
        finally:
            cluster.close()
    problems, seen = compare(clients, truth)
    lost = check_writes(works, truth)
    races = [r for w in works for r in w.races]
    unexpected = [u for f in soak.figures for u in f.unexpected]
    codes: dict[str, int] = {}
    for f in soak.figures:
        for code, n in f.ops_by_code.items():
            codes[code] = codes.get(code, 0) + n
    witness = [(s.t, s.instances[0][1], s.instances[0][2]) for s in soak.samples]
    print()
    print(f"operations: {ops}, by result code {dict(sorted(codes.items()))}")
    print(f"faults: {len(soak.faults)}; database: tasks {truth.tasks_by_status}")
    print(
        f"claim races: {len(races)}, claims standing {sum(len(w.claimed) for w in works)}; "
        f"feeds in the database {len(truth.owners)}"
    )
    print(
        f"clients: events delivered {seen.events} (role queues {seen.role_events}, stood "
        f"in for {seen.standin_events}), connections {seen.connections}, feed.joined "
        f"{seen.joined}, feed.left {seen.left}, seq gaps {seen.gaps}, reconnects by close "
        f"code {dict(sorted(seen.closes.items()))}, snapshots after the first "
        f"{seen.snapshots_after_first} (needless {seen.needless_snapshots})"
    )
    print(f"instance 0 (never restarted): {trend(witness)}")
    print(
        f"problems: database {len(truth.problems)}, clients {len(problems)}, "
        f"lost acked {len(lost)}, unexpected answers {len(unexpected)}"
    )
    for line in (truth.problems + problems + lost + unexpected)[:20]:
        print("  ", line)
    report = {
        "args": vars(args),
        "samples": [s.__dict__ for s in soak.samples],
        "faults": soak.faults,
        "ops_by_code": codes,
        "problems": truth.problems + problems + lost + unexpected,
    }
    ok = not (truth.problems or problems or lost or unexpected or seen.gaps)
    print("PASS" if ok else "FAIL")
    return ok, report


def print_sample(s: Sample, header: bool = False) -> None:
    if header:
        cols = "  ".join(f"i{i} RSS MB  fds thr conns" for i in range(len(s.instances)))
        print(f"{'t s':>6} {'ops':>7}  {cols}  driver MB")
    cells = "  ".join(
        f"{rss:9.1f} {fds:4d} {thr:3d} {conns:5d}" for _, rss, fds, thr, conns in s.instances
    )
    print(f"{s.t:6.0f} {s.ops:7d}  {cells}  {s.driver_rss_mb:9.1f}", flush=True)


def trend(points: list[tuple[float, float, int]]) -> str:
    """RSS and fds at the start, the middle and the end, and the RSS slope over the
    second half (MB per minute; a leak shows as a steady positive slope)."""
    if len(points) < 3:
        return "too few samples"
    half = points[len(points) // 2 :]
    n = len(half)
    mean_t = sum(p[0] for p in half) / n
    mean_r = sum(p[1] for p in half) / n
    var = sum((p[0] - mean_t) ** 2 for p in half) or 1.0
    slope = sum((p[0] - mean_t) * (p[1] - mean_r) for p in half) / var * 60
    first, mid, last = points[0], points[len(points) // 2], points[-1]
    return (
        f"RSS {first[1]:.1f} -> {mid[1]:.1f} -> {last[1]:.1f} MB, fds {first[2]} -> "
        f"{mid[2]} -> {last[2]}, RSS slope over the second half {slope:+.2f} MB/min"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--instances", type=int, default=3)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--owners", type=int, default=50, help="people per tenant (at least 12)")
    p.add_argument("--rate", type=float, default=150.0, help="operations per second")
    p.add_argument("--fault-every", type=float, default=20.0, help="seconds between faults")
    p.add_argument("--sample-every", type=float, default=15.0, help="seconds between samples")
    p.add_argument("--sweep", type=float, default=1.0, help="TASKBELL_SWEEP_SECONDS")
    p.add_argument("--json", default=None, help="also write the samples to this file")
    args = p.parse_args(argv)
    if args.owners < 12:
        p.error("--owners must be at least 12")
    ok, report = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
