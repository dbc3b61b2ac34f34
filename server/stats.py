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


class OverallJSON(TypedDict):
    """Every process of the period together (percentiles cannot be added up per process)."""

    counts: dict[str, int]
    duration_ms: DurationsJSON


Row = tuple[str, str, int | None]  # (process name, instance status, duration in ms)


def durations(values: Sequence[int]) -> DurationsJSON:
    """Count, mean, nearest-rank p50 and p95, and max of completed instances' durations."""
    ordered = sorted(values)
    return {
        "completed": len(ordered),
        "mean": round(sum(ordered) / len(ordered)) if ordered else None,
        "p50": percentile(ordered, 0.50),
        "p95": percentile(ordered, 0.95),
        "max": ordered[-1] if ordered else None,
    }


def _is_completed(status: str, duration: int | None) -> bool:
    return status == InstanceStatus.COMPLETED and duration is not None


def summarize(rows: Sequence[Row]) -> list[ProcessStatsJSON]:
    """Per process name: counts by status and the durations of completed instances."""
    counts: dict[str, dict[str, int]] = {}
    taken: dict[str, list[int]] = {}
    for name, status, duration in rows:
        by_status = counts.setdefault(name, {s.value: 0 for s in InstanceStatus})
        by_status[status] = by_status.get(status, 0) + 1
        if _is_completed(status, duration):
            assert duration is not None
            taken.setdefault(name, []).append(duration)
    return [
        {"name": name, "counts": counts[name], "duration_ms": durations(taken.get(name, []))}
        for name in sorted(counts)
    ]


def overall(rows: Sequence[Row]) -> OverallJSON:
    """All processes together: counts by status (every status listed) and durations."""
    counts = {s.value: 0 for s in InstanceStatus}
    taken: list[int] = []
    for _, status, duration in rows:
        counts[status] = counts.get(status, 0) + 1
        if _is_completed(status, duration):
            assert duration is not None
            taken.append(duration)
    return {"counts": counts, "duration_ms": durations(taken)}
