"""Pure summary helpers: percentiles and rates. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Distribution:
    """Summary of a sample of durations, in milliseconds."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    def as_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "mean_ms": self.mean_ms,
        }


EMPTY = Distribution(0, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"))


def percentile(sorted_values: Sequence[int], fraction: float) -> int:
    """Nearest-rank percentile of an ascending sequence (fraction in 0..1)."""
    if not sorted_values:
        raise ValueError("percentile of an empty sample")
    rank = max(1, min(len(sorted_values), int(fraction * len(sorted_values) + 0.999999)))
    return sorted_values[rank - 1]


def summarize_ns(samples_ns: Sequence[int]) -> Distribution:
    """Summarize nanosecond durations as milliseconds."""
    if not samples_ns:
        return EMPTY
    ordered = sorted(samples_ns)
    ms = 1e-6
    return Distribution(
        count=len(ordered),
        p50_ms=percentile(ordered, 0.50) * ms,
        p90_ms=percentile(ordered, 0.90) * ms,
        p99_ms=percentile(ordered, 0.99) * ms,
        max_ms=ordered[-1] * ms,
        mean_ms=sum(ordered) / len(ordered) * ms,
    )


def per_second(count: int, elapsed_s: float) -> float:
    return count / elapsed_s if elapsed_s > 0 else float("nan")
