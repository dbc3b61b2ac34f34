"""This process's figures for Prometheus (``GET /metrics``, ``server.api.metrics``).

Each app has its own ``Metrics`` with its own ``CollectorRegistry`` (never the global
one), so several apps in one process (the tests) keep their figures apart. Each
instance serves its own process's figures: a deployment of several instances (or
several worker processes) scrapes each one; Prometheus adds them up.

Counted where it happens (one call each): sockets joining and leaving the hub (by close
code), snapshots and replays, events delivered, 4008 closes, write transactions (ops per
transaction and their database time), deliveries by channel and result, requests refused
over a rate. Read at scrape time (``StateCollector``): sockets open, the broker's state
and (re)connections, timers fired; the outbox depth is one cheap count that the endpoint
runs before answering.

A part built outside an app (a unit test's ``Hub``) counts into ``UNCOUNTED``, a
``Metrics`` that nobody serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

NAMESPACE = "taskbell"
OPS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ns = NAMESPACE
        self.connects = Counter(
            "socket_connects",
            "Sockets (/ws) and event streams (/events) that joined the hub",
            namespace=ns,
            registry=r,
        )
        self.closes = Counter(
            "socket_closes",
            "Sockets and streams that left the hub, by the close code the server gave "
            "('peer': the client went away first)",
            ["code"],
            namespace=ns,
            registry=r,
        )
        self.snapshots = Counter(
            "snapshots", "Joins answered with a snapshot", namespace=ns, registry=r
        )
        self.replays = Counter(
            "replays", "Joins answered with the missed events (since)", namespace=ns, registry=r
        )
        self.events_delivered = Counter(
            "events_delivered",
            "Feed events queued on a socket or stream",
            namespace=ns,
            registry=r,
        )
        self.overflows = Counter(
            "queue_overflows",
            "Sockets closed 4008 (too slow: their queue overflowed, or what they missed is "
            "gone); they resume with since",
            namespace=ns,
            registry=r,
        )
        self.write_ops = Histogram(
            "write_ops_per_transaction",
            "Operations per committed write transaction (group commit)",
            namespace=ns,
            registry=r,
            buckets=OPS_BUCKETS,
        )
        self.write_seconds = Histogram(
            "write_transaction_seconds",
            "Database time of a committed write transaction, commit included",
            namespace=ns,
            registry=r,
            buckets=SECONDS_BUCKETS,
        )
        self.timers_fired = Counter(
            "timers_fired",
            "Postponed tasks that came back by themselves",
            namespace=ns,
            registry=r,
        )
        self.deliveries = Counter(
            "deliveries",
            "Webhook and Web Push attempts, by channel and result (delivered, retry, failed)",
            ["channel", "result"],
            namespace=ns,
            registry=r,
        )
        self.suppressed = Counter(
            "notifications_suppressed",
            "Web Push notifications not sent because of the person's preferences, by reason "
            "(channel_off, muted, quiet_hours)",
            ["channel", "reason"],
            namespace=ns,
            registry=r,
        )
        self.rate_limited = Counter(
            "rate_limited",
            "Requests refused 429 rate_limited (over TASKBELL_RATE_PRODUCER or _USER)",
            namespace=ns,
            registry=r,
        )
        self.outbox_pending = Gauge(
            "outbox_pending",
            "Deliveries waiting in the outbox (read at scrape time)",
            namespace=ns,
            registry=r,
        )

    # ---------------------------------------------------------------- the calls

    def joined(self, *, snapshot: bool) -> None:
        self.connects.inc()
        (self.snapshots if snapshot else self.replays).inc()

    def left(self, code: int | None) -> None:
        self.closes.labels("peer" if code is None else str(code)).inc()
        if code == 4008:
            self.overflows.inc()

    def wrote(self, ops: int, seconds: float) -> None:
        self.write_ops.observe(ops)
        self.write_seconds.observe(seconds)

    def watch(self, read: Callable[[], dict[str, Any]]) -> None:
        """Report what ``read()`` finds at each scrape (``StateCollector``)."""
        self.registry.register(StateCollector(read))


class StateCollector(Collector):
    """Figures read from the live objects at scrape time: ``read()`` returns the hub and
    the broker (or {} before start-up)."""

    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        found = self.read()
        hub, broker = found.get("hub"), found.get("broker")
        if hub is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_sockets_open",
                "Sockets and event streams open on this instance",
                value=hub.connection_count,
            )
        if broker is not None:
            yield GaugeMetricFamily(
                f"{NAMESPACE}_broker_up",
                "1 while the broker is reachable (the in-process broker always is)",
                value=1 if broker.healthy else 0,
            )
            yield CounterMetricFamily(
                f"{NAMESPACE}_broker_connects",
                "Times the Redis listener (re)subscribed, the first time included",
                value=getattr(broker, "reconnects", 0),
            )
            yield CounterMetricFamily(
                f"{NAMESPACE}_broker_dropped",
                "Envelopes the broker could not publish and dropped (sweeps repair them)",
                value=getattr(broker, "dropped", 0),
            )


UNCOUNTED = Metrics()


def of(app: Any) -> Metrics:
    """The app's ``Metrics`` (``UNCOUNTED`` for an app built without one)."""
    found: Metrics = getattr(app.state, "metrics", UNCOUNTED)
    return found
