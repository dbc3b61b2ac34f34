"""Process statistics, as plain functions on values: instances counted by status, and
the durations of completed instances only (a canceled or failed process says nothing
about how long the work takes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

from server.ops import InstanceStatus


class DurationsJSON(TypedDict):
    completed: int
    mean: int | None
    p50: int | None
    p95: int | None
    max: int | None


class ProcessStatsJSON(TypedDict):
    name: str
    counts: dict[str, int]
    duration_ms: DurationsJSON


def percentile(sorted_values: Sequence[int], q: float) -> int | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(rows: Sequence[tuple[str, str, int | None]]) -> list[ProcessStatsJSON]:
    """Per process name: counts by status and the durations of completed instances."""
    counts: dict[str, dict[str, int]] = {}
    durations: dict[str, list[int]] = {}
    for name, status, duration in rows:
        by_status = counts.setdefault(name, {s.value: 0 for s in InstanceStatus})
        by_status[status] = by_status.get(status, 0) + 1
        if status == InstanceStatus.COMPLETED and duration is not None:
            durations.setdefault(name, []).append(duration)
    out: list[ProcessStatsJSON] = []
    for name in sorted(counts):
        values = sorted(durations.get(name, []))
        out.append(
            {
                "name": name,
                "counts": counts[name],
                "duration_ms": {
                    "completed": len(values),
                    "mean": round(sum(values) / len(values)) if values else None,
                    "p50": percentile(values, 0.50),
                    "p95": percentile(values, 0.95),
                    "max": values[-1] if values else None,
                },
            }
        )
    return out
