"""``GET /metrics``: Prometheus text that parses, figures that move with what happens,
one registry per app, and access control both ways."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import Response

from server.settings import Settings
from tests.push.conftest import fast
from tests.push.receiver import Received, Receiver, running
from tests.support.app import PRODUCER_KEY, Live, make_settings, serve, token
from tests.support.client import FeedClient
from tests.support.stalled import StalledClient, flood_until_too_slow
from tests.support.tasks import task_body


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and labels (parsing it checks it)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(
    live: Live, **headers: str
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(base_url=live.base_url) as http:
        got = await http.get("/metrics", headers=headers)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/plain")
    return samples(got.text)


def one(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_figures_move_when_sockets_come_and_go_and_tasks_are_written(
    live: Live,
) -> None:
    before = await scrape(live)
    assert one(before, "taskbell_sockets_open") == 0
    assert one(before, "taskbell_broker_up") == 1
    async with FeedClient(live.ws_url, token("alice")) as feed:
        await feed.connect()
        async with live.producer() as p:
            assert (await p.post("/api/v1/tasks", json=task_body("m1"))).status_code == 201
        await feed.until_seq(1)
        during = await scrape(live)
    assert one(during, "taskbell_sockets_open") == 1
    assert one(during, "taskbell_socket_connects_total") == 1
    assert one(during, "taskbell_snapshots_total") == 1
    assert one(during, "taskbell_events_delivered_total") >= 1
    assert one(during, "taskbell_write_ops_per_transaction_count") >= 1
    assert one(during, "taskbell_write_ops_per_transaction_bucket", le="1.0") >= 1
    assert one(during, "taskbell_write_transaction_seconds_sum") > 0
    assert one(during, "taskbell_outbox_pending") == 0
    for _ in range(100):  # the hub sees the socket leave a moment after it closed
        after = await scrape(live)
        if one(after, "taskbell_sockets_open") == 0:
            break
        await asyncio.sleep(0.05)
    assert one(after, "taskbell_sockets_open") == 0
    closes = {k[1]: v for k, v in after.items() if k[0] == "taskbell_socket_closes_total"}
    assert sum(closes.values()) == 1, closes


async def test_a_resumed_socket_counts_a_replay(
    sqlite_url: str,
) -> None:
    async with serve(make_settings(sqlite_url)) as live:
        async with live.producer() as p:
            await p.post("/api/v1/tasks", json=task_body("r1"))
        async with FeedClient(live.ws_url, token("alice")) as feed:
            await feed.connect(since=0)
        found = await scrape(live)
        assert one(found, "taskbell_replays_total") == 1
        assert one(found, "taskbell_snapshots_total") == 0


async def test_postponed_tasks_that_come_back_count_as_timers_fired(embedded: Live) -> None:
    async with embedded.producer() as p:
        soon = datetime.now(UTC) + timedelta(seconds=1)
        body = {**task_body("late"), "postponed_until": soon.isoformat()}
        assert (await p.post("/api/v1/tasks", json=body)).status_code == 201
        assert (await p.get("/api/v1/tasks/late")).json()["status"] == "postponed"
        for _ in range(200):
            if (await p.get("/api/v1/tasks/late")).json()["status"] == "running":
                break
            await asyncio.sleep(0.05)
    for _ in range(100):  # counted once the timer's tick is over
        fired = one(await scrape(embedded), "taskbell_timers_fired_total")
        if fired:
            break
        await asyncio.sleep(0.05)
    assert fired == 1


async def test_refusals_over_the_rate_are_counted(sqlite_url: str) -> None:
    async with serve(make_settings(sqlite_url, rate_producer=0.1)) as live:
        async with live.producer() as p:
            statuses = [(await p.get("/api/v1/tasks/nope")).status_code for _ in range(4)]
        assert 429 in statuses
        assert one(await scrape(live), "taskbell_rate_limited_total") == statuses.count(429)


async def test_each_app_has_its_own_figures(sqlite_url: str, tmp_path: object) -> None:
    other = make_settings(f"sqlite+aiosqlite:///{tmp_path}/other.db")
    async with serve(make_settings(sqlite_url)) as first, serve(other) as second:
        async with first.producer() as p:
            await p.post("/api/v1/tasks", json=task_body("a1"))
        ops_first = one(await scrape(first), "taskbell_write_ops_per_transaction_sum")
        ops_second = one(await scrape(second), "taskbell_write_ops_per_transaction_sum")
    assert ops_first >= 1
    assert ops_second < ops_first  # the second app only ran its own start-up writes


async def test_with_a_metrics_token_only_it_or_a_producer_key_may_scrape(
    sqlite_url: str,
) -> None:
    settings: Settings = replace(make_settings(sqlite_url), metrics_token="m-token-1234")
    async with serve(settings) as live, httpx.AsyncClient(base_url=live.base_url) as http:
        anonymous = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        user = await http.get("/metrics", headers={"Authorization": f"Bearer {token('alice')}"})
        right = await http.get("/metrics", headers={"Authorization": "Bearer m-token-1234"})
        producer = await http.get("/metrics", headers={"Authorization": f"Bearer {PRODUCER_KEY}"})
    for refused in (anonymous, wrong, user):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] in ("missing_credentials", "invalid_metrics_token")
    assert right.status_code == producer.status_code == 200
    assert "taskbell_sockets_open" in right.text


async def test_without_a_metrics_setting_anyone_may_scrape(embedded: Live) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as http:
        got = await http.get("/metrics")
    assert got.status_code == 200
    assert samples(got.text)


async def test_a_socket_whose_queue_overflows_counts_as_a_4008_close(sqlite_url: str) -> None:
    async with serve(make_settings(sqlite_url, send_queue_size=20)) as live:
        slow = StalledClient(live.ws_url, token("alice"))
        await slow.connect_and_stall()  # read the snapshot, then nothing more
        await flood_until_too_slow(live, prefix="o")
        code, _ = await slow.read_until_close()
        slow.close()
        assert code == 4008
        for _ in range(100):
            found = await scrape(live)
            if one(found, "taskbell_queue_overflows_total") == 1:
                break
            await asyncio.sleep(0.05)
        assert one(found, "taskbell_queue_overflows_total") == 1
        assert one(found, "taskbell_socket_closes_total", code="4008") == 1
        assert one(found, "taskbell_write_ops_per_transaction_bucket", le="50.0") >= 1


async def test_webhook_attempts_are_counted_by_result(sqlite_url: str) -> None:
    def once_busy(r: Received, rec: Receiver) -> Response:
        first = rec.attempts(r.webhook_id) == 1
        return Response(status_code=503 if first else 204)

    async with (
        running(Receiver(plan=once_busy)) as receiver,
        serve(fast(make_settings(sqlite_url))) as live,
    ):
        async with live.producer() as p:
            hook = {"url": receiver.url, "events": ["task.created"]}
            assert (await p.post("/api/v1/webhooks", json=hook)).status_code == 201
            await p.post("/api/v1/tasks", json=task_body("w-1"))
        await receiver.wait(lambda: len(receiver.accepted) == 1)
        for _ in range(100):
            found = await scrape(live)
            delivered = one(
                found, "taskbell_deliveries_total", channel="webhook", result="delivered"
            )
            # The depth is counted before the figures are written out: a delivery recorded
            # in between shows as delivered and still pending in that one scrape.
            if delivered and one(found, "taskbell_outbox_pending") == 0:
                break
            await asyncio.sleep(0.05)
    assert one(found, "taskbell_deliveries_total", channel="webhook", result="retry") == 1
    assert one(found, "taskbell_deliveries_total", channel="webhook", result="delivered") == 1
    assert one(found, "taskbell_outbox_pending") == 0
