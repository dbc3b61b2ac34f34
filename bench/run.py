"""Run the benchmark scenarios against a real server and print a table of figures.

Every scenario gets a fresh server process (fresh SQLite database in a temporary
directory, in-process broker unless ``--redis`` is given) pinned to core 0 with
``taskset -c 0``; the load generator runs as its own process pinned to core 1. The
open-files limit is raised to the hard limit first: both processes inherit it, and
5,000 sockets need 5,000 descriptors on each side.

    python -m bench.run            # the full run (5,000 sockets over 1,000 owners)
    python -m bench.run --quick    # 500 sockets over 100 owners, short phases
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from bench.report import LoadgenResult, per_core

REPO = Path(__file__).resolve().parent.parent
SERVER_CORE, LOADGEN_CORE = "0", "1"


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


def scenarios(quick: bool, compression: str, duration_scale: float) -> list[Scenario]:
    n, u = (500, 100) if quick else (5000, 1000)
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
        Scenario("e-latency-100", "one change per request at 100/s (unloaded latency)", n, u,
                 "single", 100, short, compression=compression),
    ]  # fmt: skip


def raise_open_files_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(core: str, argv: list[str], pin: bool) -> list[str]:
    return ["taskset", "-c", core, *argv] if pin else argv


class Server:
    """One ``python -m server`` process with its own temporary database."""

    def __init__(self, workdir: Path, args: argparse.Namespace, pin: bool) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.secret = secrets.token_urlsafe(32)
        self.producer_key = secrets.token_urlsafe(24)
        self.log_path = workdir / "server.log"
        env = dict(os.environ)
        env.update(
            HOST="127.0.0.1",
            PORT=str(self.port),
            DATABASE_URL=args.postgres or f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
            TASKBELL_SECRET=self.secret,
            TASKBELL_PRODUCER_KEYS=self.producer_key,
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        )
        env.pop("REDIS_URL", None)
        if args.redis:
            env["REDIS_URL"] = args.redis
        self._log = self.log_path.open("wb")
        command = shlex.split(args.server_cmd) if args.server_cmd else [args.python, "-m", "server"]
        argv = pinned(SERVER_CORE, command, pin)
        self.process = subprocess.Popen(
            argv, cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_healthy(self, timeout_s: float = 60) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}\n{self.tail()}")
            try:
                with opener.open(f"{self.url}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server did not answer /healthz in {timeout_s} s\n{self.tail()}")

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def problems(self) -> list[str]:
        """Log lines that look like errors (tracebacks, ERROR level)."""
        text = self.log_path.read_text(errors="replace").splitlines()
        hits = [ln for ln in text if "Traceback" in ln or "ERROR" in ln or "Error:" in ln]
        return hits


def start_profiler(server: Server, workdir: Path) -> subprocess.Popen[bytes] | None:
    """Sample the server with py-spy (if installed) for the whole load-generator run."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return None
    argv = [py_spy, "record", "--pid", str(server.process.pid), "--rate", "250"]
    argv += ["--format", "flamegraph", "--output", str(workdir / "profile.svg")]
    log = (workdir / "py-spy.log").open("wb")
    # Pinned beside the load generator so the sampler does not steal the server's core.
    return subprocess.Popen(pinned(LOADGEN_CORE, argv, True), stdout=log, stderr=log)


def stop_profiler(profiler: subprocess.Popen[bytes], workdir: Path) -> str:
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()
    svg = workdir / "profile.svg"
    return f"server profile: {svg}" if svg.exists() else f"py-spy failed: {workdir}/py-spy.log"


def run_scenario(
    scenario: Scenario, args: argparse.Namespace, root: Path, pin: bool
) -> tuple[LoadgenResult | None, list[str]]:
    workdir = root / scenario.name
    workdir.mkdir()
    server = Server(workdir, args, pin)
    notes: list[str] = []
    try:
        server.wait_healthy()
        out = workdir / "result.json"
        argv = [
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
        env = dict(os.environ, TASKBELL_SECRET=server.secret)
        env["TASKBELL_PRODUCER_KEY"] = server.producer_key
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env["PYTHONWARNINGS"] = "ignore"
        budget = 120 + scenario.duration_s * 3 + scenario.connections / 50
        print(f"\n--- {scenario.name}: {scenario.what}", flush=True)
        profiler = start_profiler(server, workdir) if args.profile else None
        if args.profile and profiler is None:
            notes.append(f"{scenario.name}: no profile: py-spy is not installed")
        try:
            subprocess.run(pinned(LOADGEN_CORE, argv, pin), env=env, timeout=budget, check=False)
        except subprocess.TimeoutExpired:
            notes.append(f"{scenario.name}: load generator timed out after {budget:.0f} s")
        finally:
            if profiler is not None:
                notes.append(f"{scenario.name}: {stop_profiler(profiler, workdir)}")
        result = LoadgenResult.from_json(out.read_bytes()) if out.exists() else None
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
    def mark(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    out: list[str] = []
    if (a := rows.get("a-connect")) is not None:
        out.append(
            f"{mark(a.kb_per_connection <= 15)} <= 15 KB/connection (deflate offered): "
            f"{_c(a.kb_per_connection, 1)}"
        )
        out.append(f"{mark(a.connects_per_s >= 2000)} >= 2,000 connects/s: {_c(a.connects_per_s)}")
    if (p := rows.get("a-connect-plain")) is not None:
        out.append(
            f"{mark(p.kb_per_connection <= 15)} <= 15 KB/connection (no compression): "
            f"{_c(p.kb_per_connection, 1)}"
        )
    if (b := rows.get("b-single-max")) is not None:
        out.append(
            f"{mark(b.e2e_changes_per_s >= 1000)} >= 1,000 changes/s one per request, "
            f"persisted+delivered: {_c(b.e2e_changes_per_s)}"
        )
    if (c := rows.get("c-batch-max")) is not None:
        out.append(
            f"{mark(c.e2e_changes_per_s >= 3000)} >= 3,000 changes/s batched, "
            f"persisted+delivered: {_c(c.e2e_changes_per_s)}"
        )
    if (d := rows.get("d-latency-500")) is not None:
        on_rate = d.changes_per_s >= 0.95 * d.rate_target
        out.append(
            f"{mark(d.latency_p99_ms < 20 and on_rate)} p99 < 20 ms at 500 changes/s: "
            f"{_c(d.latency_p99_ms, 1)} ms at {_c(d.changes_per_s)} changes/s"
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
    p.add_argument("--python", default=sys.executable, help="interpreter for both processes")
    p.add_argument(
        "--server-cmd", default="", help="command to start the server instead of python -m server"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the server with py-spy into <workdir>/<scenario>/profile.svg (implies --keep)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, JSON)")
    args = p.parse_args(argv)
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
    if args.only:
        wanted = set(args.only.split(","))
        chosen = [s for s in chosen if s.name in wanted]
    needed = max((s.connections for s in chosen), default=0) * 2 + 100
    if fds < needed:
        print(f"WARNING open-files limit {fds} is below the {needed} this run needs")
        chosen = [replace(s, connections=min(s.connections, fds // 2 - 100)) for s in chosen]

    root = Path(tempfile.mkdtemp(prefix="taskbell-bench-"))
    rows: list[tuple[Scenario, LoadgenResult]] = []
    notes: list[str] = []
    try:
        for scenario in chosen:
            result, scenario_notes = run_scenario(scenario, args, root, pin)
            notes += scenario_notes
            if result is not None:
                rows.append((scenario, result))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print("\n=== Taskbell benchmark" + (" (quick)" if args.quick else ""))
    print(
        "latency = from the change's HTTP request being written to the event being read on "
        "the socket; e2e ch/s = acknowledged changes / time until their last delivery;\n"
        "srv ms/op = server CPU ms per change incl. its deliveries (per connect in a- rows); "
        "op/s/core = 1000 / srv ms/op"
    )
    print(table(rows))
    print()
    for line in verdicts({s.name: r for s, r in rows}, full=not args.quick):
        print(line)
    for note in notes:
        print("NOTE", note)
    if args.keep:
        print(f"work directory kept: {root}")
    return 0 if rows and len(rows) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
