"""Run the benchmark scenarios against a real server and print a table of figures.

Every scenario gets a fresh server process (fresh SQLite database in a temporary
directory, in-process broker unless ``--redis`` is given) pinned to core 0 with
``taskset -c 0``; the load generator runs as its own process pinned to core 1. The
open-files limit is raised to the hard limit first: both processes inherit it, and
5,000 sockets need 5,000 descriptors on each side.

    python -m bench.run            # the full run (5,000 sockets over 1,000 owners)
    python -m bench.run --quick    # 500 sockets over 100 owners, short phases
    python -m bench.run --only queue [--quick]   # the role-queue scenario (opt-in)
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bench import rolequeue
from bench.report import LoadgenResult, per_core
from bench.rolequeue import QueueResult
from bench.serverproc import (
    LOADGEN_CORE,
    REPO,
    SERVER_CORE,
    Server,
    pinned,
    start_profiler,
    stop_profiler,
)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    what: str
    connections: int
    owners: int
    mode: str = "single"
    rate: float = 0
    duration_s: float = 0
    batch_size: int = 100
    concurrency: int = 32
    compression: str = "deflate"
    # "feed": bench.loadgen (owners' own feeds); "queue": bench.rolequeue (one role queue,
    # `connections` members, `claimers` of them racing for each task). Queue scenarios
    # run only when named in --only.
    kind: str = "feed"
    claimers: int = 0


def scenarios(quick: bool, compression: str, duration_scale: float) -> list[Scenario]:
    n, u = (500, 100) if quick else (5000, 1000)
    m = 100 if quick else 1000  # queue members
    short, long = (5.0, 8.0) if quick else (20.0, 30.0)
    short, long = short * duration_scale, long * duration_scale
    return [
        Scenario("a-connect", "connect + memory, deflate offered (browser-like)", n, u),
        Scenario("a-connect-plain", "connect + memory, no compression offered", n, u,
                 compression="none"),
        Scenario("b-single-max", "one change per request, max rate", n, u, "single", 0, short,
                 compression=compression),
        Scenario("c-batch-max", "batch of 100 per request, max rate", n, u, "batch", 0, short,
                 concurrency=4, compression=compression),
        Scenario("d-latency-500", "one change per request at 500/s", n, u, "single", 500, long,
                 compression=compression),
        Scenario("d-latency-1000", "one change per request at 1,000/s (the target's rate)", n,
                 u, "single", 1000, long, compression=compression),
        Scenario("e-latency-100", "one change per request at 100/s (unloaded latency)", n, u,
                 "single", 100, short, compression=compression),
        Scenario("queue", "1 role queue, one socket per member, creates at 200/s, 3 claimers "
                 "racing per task", m, m, "single", 200, short, compression=compression,
                 kind="queue", claimers=3),
    ]  # fmt: skip


def raise_open_files_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def loadgen_argv(
    scenario: Scenario, args: argparse.Namespace, server: Server, out: Path
) -> list[str]:
    if scenario.kind == "queue":
        return [
            args.python, "-m", "bench.rolequeue",
            "--url", server.url,
            "--members", str(scenario.connections),
            "--rate", str(scenario.rate),
            "--duration", str(scenario.duration_s),
            "--claimers", str(scenario.claimers),
            "--concurrency", str(scenario.concurrency),
            "--compression", scenario.compression,
            "--server-pid", str(server.process.pid),
            "--label", scenario.name,
            "--json", str(out),
        ]  # fmt: skip
    return [
        args.python, "-m", "bench.loadgen",
        "--url", server.url,
        "--connections", str(scenario.connections),
        "--owners", str(scenario.owners),
        "--rate", str(scenario.rate),
        "--duration", str(scenario.duration_s),
        "--mode", scenario.mode,
        "--batch-size", str(scenario.batch_size),
        "--concurrency", str(scenario.concurrency),
        "--compression", scenario.compression,
        "--server-pid", str(server.process.pid),
        "--label", scenario.name,
        "--json", str(out),
    ]  # fmt: skip


def run_scenario(
    scenario: Scenario, args: argparse.Namespace, root: Path, pin: bool
) -> tuple[LoadgenResult | QueueResult | None, list[str]]:
    workdir = root / scenario.name
    workdir.mkdir()
    server = Server(workdir, args, pin)
    notes: list[str] = []
    try:
        server.wait_healthy()
        out = workdir / "result.json"
        argv = loadgen_argv(scenario, args, server, out)
        env = dict(os.environ, TASKBELL_SECRET=server.secret)
        env["TASKBELL_PRODUCER_KEY"] = server.producer_key
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONWARNINGS"] = "ignore"
        budget = 120 + scenario.duration_s * 3 + scenario.connections / 50
        print(f"\n--- {scenario.name}: {scenario.what}", flush=True)
        profiler = start_profiler(server, workdir, gil=args.profile_gil) if args.profile else None
        if args.profile and profiler is None:
            notes.append(f"{scenario.name}: no profile: py-spy is not installed")
        try:
            subprocess.run(pinned(LOADGEN_CORE, argv, pin), env=env, timeout=budget, check=False)
        except subprocess.TimeoutExpired:
            notes.append(f"{scenario.name}: load generator timed out after {budget:.0f} s")
        finally:
            if profiler is not None:
                notes.append(f"{scenario.name}: {stop_profiler(profiler, workdir)}")
        parse = QueueResult.from_json if scenario.kind == "queue" else LoadgenResult.from_json
        result = parse(out.read_bytes()) if out.exists() else None
        if result is None:
            notes.append(f"{scenario.name}: no result (see output above)")
        if server.process.poll() is not None:
            notes.append(f"{scenario.name}: server exited early ({server.process.returncode})")
    except RuntimeError as exc:
        notes.append(f"{scenario.name}: {exc}")
        result = None
    finally:
        code = server.stop()
        problems = server.problems()
        if problems:
            notes.append(
                f"{scenario.name}: server log has {len(problems)} error lines, e.g. "
                + " | ".join(problems[:3])
                + f" (log: {server.log_path})"
            )
        if code not in (0, None, -signal.SIGTERM):
            notes.append(f"{scenario.name}: server exit status {code} after SIGTERM")
    return result, notes


def _c(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN check


def table(rows: list[tuple[Scenario, LoadgenResult]]) -> str:
    head = (
        "scenario",
        "conns",
        "connect/s",
        "KB/conn",
        "changes/s",
        "e2e ch/s",
        "events/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "lost",
        "dup",
        "ooo",
        "gen cpu%",
        "srv cpu%",
        "srv ms/op",
        "op/s/core",
    )
    body: list[tuple[str, ...]] = []
    for scenario, r in rows:
        driven = r.requests > 0
        ms_per_op = r.server_cpu_ms_per_change if driven else r.server_cpu_ms_per_connect
        body.append(
            (
                scenario.name,
                f"{r.connected}/{r.connections}",
                _c(r.connects_per_s),
                _c(r.kb_per_connection, 1),
                _c(r.changes_per_s) if driven else "-",
                _c(r.e2e_changes_per_s) if driven else "-",
                _c(r.events_per_s) if driven else "-",
                _c(r.latency_p50_ms, 1) if driven else "-",
                _c(r.latency_p99_ms, 1) if driven else "-",
                _c(r.latency_max_ms, 1) if driven else "-",
                str(r.lost) if driven else "-",
                str(r.duplicates) if driven else "-",
                str(r.out_of_order) if driven else "-",
                _c(r.loadgen_cpu_drive_pct if driven else r.loadgen_cpu_connect_pct),
                _c(r.server_cpu_drive_pct if driven else r.server_cpu_connect_pct),
                _c(ms_per_op, 3),
                _c(per_core(ms_per_op)),
            )
        )
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True))
        for row in [head, *body]
    ]
    return "\n".join(lines)


def verdicts(rows: dict[str, LoadgenResult], full: bool) -> list[str]:
    """PASS/FAIL against issue #14's targets (one process on one core)."""

    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    out: list[str] = []
    if (a := rows.get("a-connect")) is not None:
        out.append(
            f"{mark(a.kb_per_connection <= 20)} <= 20 KB/connection (deflate offered): "
            f"{_c(a.kb_per_connection, 1)}"
        )
        out.append(f"{mark(a.connects_per_s >= 2000)} >= 2,000 connects/s: {_c(a.connects_per_s)}")
    if (p := rows.get("a-connect-plain")) is not None:
        out.append(
            f"{mark(p.kb_per_connection <= 20)} <= 20 KB/connection (no compression): "
            f"{_c(p.kb_per_connection, 1)}"
        )
    if (b := rows.get("b-single-max")) is not None:
        out.append(
            f"{mark(b.e2e_changes_per_s >= 2500)} >= 2,500 changes/s one per request, "
            f"persisted+delivered: {_c(b.e2e_changes_per_s)}"
        )
    if (c := rows.get("c-batch-max")) is not None:
        out.append(
            f"{mark(c.e2e_changes_per_s >= 5000)} >= 5,000 changes/s batched, "
            f"persisted+delivered: {_c(c.e2e_changes_per_s)}"
        )
    for name, rate in (("d-latency-500", 500), ("d-latency-1000", 1000)):
        if (d := rows.get(name)) is not None:
            on_rate = d.changes_per_s >= 0.95 * d.rate_target
            out.append(
                f"{mark(d.latency_p99_ms <= 20 and on_rate)} p99 <= 20 ms at {rate:,} "
                f"changes/s: {_c(d.latency_p99_ms, 1)} ms at {_c(d.changes_per_s)} changes/s"
            )
    driven = [r for r in rows.values() if r.requests]
    lost = sum(r.lost + r.duplicates + r.out_of_order + r.count_mismatches for r in driven)
    out.append(f"{mark(lost == 0)} zero lost/duplicate/out-of-order events: {lost}")
    noisy = [name for name, r in rows.items() if r.machine_noisy]
    if noisy:
        out.append(
            "other processes used >= 15% of a core in: " + ", ".join(noisy) + "; the "
            "op/s/core column (1000 / server CPU ms per op) is the less disturbed figure"
        )
    busy = [name for name, r in rows.items() if r.loadgen_busy]
    out.append(
        "load generator busy (>= 85% of its core) in: " + ", ".join(busy)
        if busy
        else "load generator stayed below 85% of its core in every scenario"
    )
    if not full:
        out.insert(0, "(quick run: fewer sockets and shorter phases than the targets assume)")
    return out


PEERS = {
    "starlette-redis": "bench.peers.starlette_redis",
    "bare-asgi": "bench.peers.bare_asgi",
}


def ratio_table(ours: dict[str, LoadgenResult], peers: dict[str, dict[str, LoadgenResult]]) -> str:
    """Taskbell's figure divided by each peer's, per scenario: above 1.0 is better for
    rates, below 1.0 is better for memory and CPU per operation."""
    lines = ["scenario         peer              connect/s  KB/conn  e2e ch/s  srv ms/op"]
    for name, r in ours.items():
        for peer, results in peers.items():
            q = results.get(name)
            if q is None:
                continue

            def x(a: float, b: float) -> str:
                return "-" if not a or not b or a != a or b != b else f"{a / b:.2f}x"

            driven = r.requests > 0
            ms_r = r.server_cpu_ms_per_change if driven else r.server_cpu_ms_per_connect
            ms_q = q.server_cpu_ms_per_change if driven else q.server_cpu_ms_per_connect
            lines.append(
                f"{name:<16} {peer:<16} {x(r.connects_per_s, q.connects_per_s):>10} "
                f"{x(r.kb_per_connection, q.kb_per_connection):>8} "
                f"{x(r.e2e_changes_per_s, q.e2e_changes_per_s) if driven else '-':>9} "
                f"{x(ms_r, ms_q):>10}"
            )
    return "\n".join(lines)


def ratio_verdicts(
    ours: dict[str, LoadgenResult], peers: dict[str, dict[str, LoadgenResult]]
) -> list[str]:
    """PASS/FAIL against issue #14's aims relative to the peers of the same run: >= 1.0x
    the Starlette peer's connect rate and single-request rate (while persisting
    everything), >= 0.9x the floor's connect rate, memory within 1.05x of the floor's."""

    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    def ratio(scenario: str, peer: str, figure: str) -> float | None:
        r, q = ours.get(scenario), peers.get(peer, {}).get(scenario)
        if r is None or q is None:
            return None
        a, b = getattr(r, figure), getattr(q, figure)
        return a / b if a and b else None

    aims = [
        ("a-connect-plain", "starlette-redis", "connects_per_s", ">=", 1.0, "connect rate"),
        ("b-single-max", "starlette-redis", "e2e_changes_per_s", ">=", 1.0, "single-request rate"),
        ("a-connect-plain", "bare-asgi", "connects_per_s", ">=", 0.9, "connect rate"),
        ("a-connect-plain", "bare-asgi", "kb_per_connection", "<=", 1.05, "KB per connection"),
    ]
    out = []
    for scenario, peer, figure, sense, bound, label in aims:
        x = ratio(scenario, peer, figure)
        if x is None:
            continue
        ok = x >= bound if sense == ">=" else x <= bound
        out.append(f"{mark(ok)} {label} {sense} {bound:.2f}x {peer}'s ({scenario}): {x:.2f}x")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="500 sockets / 100 owners, short runs")
    p.add_argument("--only", default="", help="comma-separated scenario names to run")
    p.add_argument("--redis", default="", help="REDIS_URL for the server (default in-process)")
    p.add_argument("--postgres", default="", help="DATABASE_URL instead of a fresh SQLite file")
    p.add_argument(
        "--compression",
        choices=["deflate", "none"],
        default="deflate",
        help="what the sockets offer in scenarios b-d (browsers offer deflate)",
    )
    p.add_argument("--duration-scale", type=float, default=1.0, help="multiply phase lengths")
    p.add_argument(
        "--queue-rate", type=float, default=200, help="queue tasks created per second (queue)"
    )
    p.add_argument(
        "--queue-members",
        type=int,
        default=0,
        help="role members online in the queue scenario (default 1,000; --quick 100)",
    )
    p.add_argument(
        "--queue-claimers",
        type=int,
        default=3,
        help="members racing to claim each queue task (0: nobody claims)",
    )
    p.add_argument("--python", default=sys.executable, help="interpreter for both processes")
    p.add_argument(
        "--server-cmd", default="", help="command to start the server instead of python -m server"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the server with py-spy into <workdir>/<scenario>/profile.txt "
        "(collapsed stacks; implies --keep)",
    )
    p.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: only samples holding the GIL (waits for it left out)",
    )
    p.add_argument(
        "--peers",
        default="",
        help="also run every scenario against these reference peers (comma-separated: "
        + ", ".join(PEERS)
        + ", or 'all') and print Taskbell's figures as ratios to theirs",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, JSON)")
    args = p.parse_args(argv)
    peers = list(PEERS) if args.peers == "all" else [x for x in args.peers.split(",") if x]
    unknown = [x for x in peers if x not in PEERS]
    if unknown:
        p.error(f"unknown peer(s) {unknown}: choose from {sorted(PEERS)}")
    args.keep = args.keep or args.profile

    fds = raise_open_files_limit()
    cores = os.cpu_count() or 1
    pin = shutil.which("taskset") is not None and cores >= 2
    print(
        f"open-files limit {fds}; {cores} cores; "
        + (
            f"server on core {SERVER_CORE}, load generator on core {LOADGEN_CORE}"
            if pin
            else "NOT pinned (needs taskset and 2 cores): figures are not comparable"
        )
    )
    chosen = scenarios(args.quick, args.compression, args.duration_scale)
    chosen = [
        replace(
            s,
            rate=args.queue_rate,
            connections=args.queue_members or s.connections,
            claimers=args.queue_claimers,
            owners=args.queue_members or s.owners,
            what=s.what.replace("200/s", f"{args.queue_rate:g}/s").replace(
                "3 claimers", f"{args.queue_claimers} claimers"
            ),
        )
        if s.kind == "queue"
        else s
        for s in chosen
    ]
    if args.only:
        wanted = set(args.only.split(","))
        chosen = [s for s in chosen if s.name in wanted]
    else:
        chosen = [s for s in chosen if s.kind != "queue"]
    needed = max((s.connections for s in chosen), default=0) * 2 + 100
    if fds < needed:
        print(f"WARNING open-files limit {fds} is below the {needed} this run needs")
        chosen = [replace(s, connections=min(s.connections, fds // 2 - 100)) for s in chosen]

    root = Path(tempfile.mkdtemp(prefix="taskbell-bench-"))
    rows: list[tuple[Scenario, LoadgenResult]] = []
    queue_rows: list[QueueResult] = []
    peer_rows: dict[str, list[tuple[Scenario, LoadgenResult]]] = {peer: [] for peer in peers}
    notes: list[str] = []
    try:
        for scenario in chosen:
            # Taskbell and the peers back to back, scenario by scenario: the same machine
            # state for each comparison.
            result, scenario_notes = run_scenario(scenario, args, root, pin)
            notes += scenario_notes
            if isinstance(result, QueueResult):
                queue_rows.append(result)
            elif result is not None:
                rows.append((scenario, result))
            if peers and scenario.kind == "queue":
                notes.append(f"{scenario.name}: not run against the peers (no role queues)")
                continue
            for peer in peers:
                peer_args = copy.copy(args)
                peer_args.server_cmd = f"{args.python} -m {PEERS[peer]}"
                peer_root = root / peer
                peer_root.mkdir(exist_ok=True)
                result, scenario_notes = run_scenario(scenario, peer_args, peer_root, pin)
                notes += [f"{peer}: {n}" for n in scenario_notes]
                if isinstance(result, LoadgenResult):
                    peer_rows[peer].append((scenario, result))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print("\n=== Taskbell benchmark" + (" (quick)" if args.quick else ""))
    if rows:
        print(
            "latency = from the change's HTTP request being written to the event being read on "
            "the socket; e2e ch/s = acknowledged changes / time until their last delivery;\n"
            "srv ms/op = server CPU ms per change incl. its deliveries (per connect in a- rows); "
            "op/s/core = 1000 / srv ms/op"
        )
        print(table(rows))
        print()
    if queue_rows:
        print(
            "queue: add = create request written -> task.added on role:desk read on each "
            "member's socket; claim = claim request -> its 200/409;\n"
            "rm = winning claim request -> task.removed on each member's socket; deliv/s = "
            "events received by all sockets; srv µs/ev = server CPU per delivered event"
        )
        print(rolequeue.table(queue_rows))
        print()
    for peer, prow in peer_rows.items():
        print(f"=== peer {peer} ({PEERS[peer]}: stores nothing)")
        print(table(prow))
        print()
    if peers:
        print("=== Taskbell / peer (rates: > 1 is Taskbell ahead; KB and ms/op: < 1 is)")
        print(
            ratio_table(
                {s.name: r for s, r in rows},
                {peer: {s.name: r for s, r in prow} for peer, prow in peer_rows.items()},
            )
        )
        print()
    if rows or not queue_rows:
        for line in verdicts({s.name: r for s, r in rows}, full=not args.quick):
            print(line)
    if peers and rows:
        ours = {s.name: r for s, r in rows}
        theirs = {peer: {s.name: r for s, r in prow} for peer, prow in peer_rows.items()}
        for line in ratio_verdicts(ours, theirs):
            print(line)
    for q in queue_rows:
        for line in rolequeue.verdicts(q):
            print(line)
        if q.machine_noisy:
            print(f"other processes used >= 15% of a core in: {q.label}")
        if q.loadgen_busy:
            print(f"load generator busy (>= 85% of its core) in: {q.label}")
    for note in notes:
        print("NOTE", note)
    if args.keep:
        print(f"work directory kept: {root}")
    done = len(rows) + len(queue_rows)
    return 0 if done and done == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
