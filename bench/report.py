"""The load generator's result: one flat record, its JSON form and its printed forms."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

# Above this share of its core the load generator may itself be the bottleneck.
BUSY_CPU_PCT = 85.0
# Above this much CPU used by other processes, the machine was not quiet.
NOISY_CPU_PCT = 15.0


@dataclass(slots=True)
class LoadgenResult:
    # What was asked.
    label: str = ""
    mode: str = "single"
    rate_target: float = 0.0
    connections: int = 0
    owners: int = 0
    batch_size: int = 0
    concurrency: int = 0
    duration_s: float = 0.0
    compression: str = ""
    event_loop: str = ""
    # Phase 1: connect + auth + snapshot.
    connected: int = 0
    connect_failures: int = 0
    connect_s: float = math.nan
    connects_per_s: float = math.nan
    connect_p50_ms: float = math.nan
    connect_p99_ms: float = math.nan
    extensions: str = ""
    # Phase 2: server memory (RSS of the server process and its children).
    rss_before_kb: float = math.nan
    rss_after_connect_kb: float = math.nan
    rss_after_drive_kb: float = math.nan
    kb_per_connection: float = math.nan
    # Phase 3: changes and deliveries.
    requests: int = 0
    changes_acked: int = 0
    changes_failed: int = 0
    transport_errors: int = 0
    drive_s: float = math.nan
    changes_per_s: float = math.nan
    request_p50_ms: float = math.nan
    request_p99_ms: float = math.nan
    late_slots: int = 0
    max_lag_ms: float = math.nan
    events_delivered: int = 0
    delivery_s: float = math.nan
    events_per_s: float = math.nan
    e2e_changes_per_s: float = math.nan
    latency_from: str = "request written (each change; a batch's changes share its send time)"
    latency_p50_ms: float = math.nan
    latency_p90_ms: float = math.nan
    latency_p99_ms: float = math.nan
    latency_max_ms: float = math.nan
    # Phase 4: integrity.
    expected_deliveries: int = 0
    lost: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    seq_gaps: int = 0
    count_mismatches: int = 0
    unmatched_events: int = 0
    closed_by_server: int = 0
    close_codes: dict[str, int] = field(default_factory=dict)
    protocol_violations: int = 0
    # Who was busy.
    loadgen_cpu_connect_pct: float = math.nan
    loadgen_cpu_drive_pct: float = math.nan
    server_cpu_connect_pct: float = math.nan
    server_cpu_drive_pct: float = math.nan
    # Server CPU time per operation: robust to other load on the machine. One core
    # could do at most 1000 / ms operations per second.
    server_cpu_ms_per_connect: float = math.nan
    server_cpu_ms_per_change: float = math.nan
    cores_connect: str = ""
    cores_drive: str = ""
    # CPU used by processes other than the two measured (100 = one core): the machine
    # may be shared, and such load makes every figure pessimistic.
    others_cpu_connect_pct: float = math.nan
    others_cpu_drive_pct: float = math.nan
    status_counts: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes) -> LoadgenResult:
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a load generator result must be a JSON object")
        floats = {f.name for f in fields(cls) if f.type == "float"}
        known = {f.name for f in fields(cls)}
        # JSON has no NaN: orjson writes it as null, so null floats read back as NaN.
        values: dict[str, Any] = {
            k: (math.nan if v is None and k in floats else v) for k, v in data.items() if k in known
        }
        return cls(**values)

    @property
    def machine_noisy(self) -> bool:
        return max(_num(self.others_cpu_connect_pct), _num(self.others_cpu_drive_pct)) >= (
            NOISY_CPU_PCT
        )

    @property
    def loadgen_busy(self) -> bool:
        return max(_num(self.loadgen_cpu_connect_pct), _num(self.loadgen_cpu_drive_pct)) >= (
            BUSY_CPU_PCT
        )


def per_core(ms_per_op: float) -> float:
    """Operations per second one whole core could do at this CPU cost."""
    return 1000 / ms_per_op if ms_per_op > 0 else math.nan


def _num(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def describe(r: LoadgenResult) -> str:
    """The human-readable summary the load generator prints."""
    rate = "max" if r.rate_target <= 0 else f"{r.rate_target:g}/s"
    lines = [
        f"== {r.label or 'loadgen'}: {r.connections} sockets over {r.owners} owners, "
        f"mode={r.mode}"
        + (f" (batch {r.batch_size})" if r.mode == "batch" else "")
        + f", target rate {rate}, concurrency {r.concurrency}, {r.duration_s:g} s, "
        f"loop {r.event_loop}, client compression {r.compression}",
        f"connect   {r.connected}/{r.connections} in {_f(r.connect_s, 2)} s = "
        f"{_f(r.connects_per_s, 0)} connects/s (auth+snapshot; per socket p50 "
        f"{_f(r.connect_p50_ms)} ms, p99 {_f(r.connect_p99_ms)} ms); failures "
        f"{r.connect_failures}; negotiated extensions: {r.extensions or 'none'}",
        f"memory    server RSS {_f(r.rss_before_kb / 1024)} MB before, "
        f"{_f(r.rss_after_connect_kb / 1024)} MB connected, "
        f"{_f(r.rss_after_drive_kb / 1024)} MB after changes = "
        f"{_f(r.kb_per_connection, 2)} KB per connection",
    ]
    if r.requests:
        lines += [
            f"changes   {r.changes_acked} acked ({r.changes_failed} failed, "
            f"{r.transport_errors} transport errors) over {r.requests} requests in "
            f"{_f(r.drive_s, 2)} s = {_f(r.changes_per_s, 0)} changes/s persisted; "
            f"request p50 {_f(r.request_p50_ms)} ms, p99 {_f(r.request_p99_ms)} ms; "
            f"late slots {r.late_slots}, max lag {_f(r.max_lag_ms)} ms",
            f"delivery  {r.events_delivered} events in {_f(r.delivery_s, 2)} s = "
            f"{_f(r.events_per_s, 0)} events/s; changes persisted+delivered "
            f"{_f(r.e2e_changes_per_s, 0)}/s",
            f"latency   change->delivery p50 {_f(r.latency_p50_ms, 2)} ms, "
            f"p90 {_f(r.latency_p90_ms, 2)} ms, p99 {_f(r.latency_p99_ms, 2)} ms, "
            f"max {_f(r.latency_max_ms, 2)} ms (from {r.latency_from})",
            f"integrity expected {r.expected_deliveries} deliveries: lost {r.lost}, "
            f"duplicates {r.duplicates}, out-of-order {r.out_of_order}, seq gaps "
            f"{r.seq_gaps}, count mismatches {r.count_mismatches}, unmatched "
            f"{r.unmatched_events}, closed by server {r.closed_by_server}"
            + (f" (close codes {r.close_codes})" if r.close_codes else "")
            + f", protocol violations {r.protocol_violations}",
            f"statuses  {r.status_counts}",
        ]
    lines += [
        f"cpu       loadgen {_f(r.loadgen_cpu_connect_pct, 0)}% of its core while "
        f"connecting, {_f(r.loadgen_cpu_drive_pct, 0)}% while driving; server "
        f"{_f(r.server_cpu_connect_pct, 0)}% / {_f(r.server_cpu_drive_pct, 0)}%; "
        f"other processes {_f(r.others_cpu_connect_pct, 0)}% / "
        f"{_f(r.others_cpu_drive_pct, 0)}%",
        f"cores     connecting: {r.cores_connect}; driving: {r.cores_drive or 'n/a'}",
        f"server    CPU per connect {_f(r.server_cpu_ms_per_connect, 3)} ms "
        f"(<= {_f(per_core(r.server_cpu_ms_per_connect), 0)} connects/s on a whole core); "
        f"CPU per change incl. its deliveries {_f(r.server_cpu_ms_per_change, 3)} ms "
        f"(<= {_f(per_core(r.server_cpu_ms_per_change), 0)} changes/s on a whole core)",
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
