"""Smoke test of the queue benchmark (bench/rolequeue.py) at a tiny size: a real
``python -m server`` process, 5 members of one role online, queue tasks created for a
second, 3 members racing to claim each. Correctness only, no timing assertions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.rolequeue import ROLE_FEED, QueueOptions, run
from bench.serverproc import Server


async def test_queue_scenario_tiny(tmp_path: Path) -> None:
    args = argparse.Namespace(postgres="", redis="", server_cmd="", python=sys.executable)
    server = Server(tmp_path, args, pin=False)
    try:
        server.wait_healthy()
        options = QueueOptions(
            url=server.url,
            members=5,
            rate=10,
            duration_s=1.0,
            claimers=3,
            concurrency=4,
            claim_concurrency=8,
            connect_concurrency=5,
            producer_key=server.producer_key,
            secret=server.secret,
            server_pid=server.process.pid,
            settle_s=5.0,
            loop="asyncio",
        )
        result = await run(options)
    finally:
        server.stop()
    assert server.problems() == []
    assert result.connected == 5 and result.connect_failures == 0
    assert result.creates_acked > 0 and result.creates_failed == 0
    # Every socket got every task.added and every task.removed on the role feed, and
    # each winner its task.added on its own feed: once, in order, no gaps.
    assert result.expected[ROLE_FEED] == 2 * 5 * result.creates_acked
    assert result.expected["user:*"] == result.creates_acked
    for feed in (ROLE_FEED, "user:*"):
        assert result.lost[feed] == 0, feed
        assert result.duplicates[feed] == 0, feed
        assert result.out_of_order[feed] == 0, feed
        assert result.seq_gaps[feed] == 0, feed
    assert result.count_mismatches == 0
    assert result.unmatched_events == 0
    assert result.wrong_claim_owner == 0
    assert result.protocol_violations == 0 and result.closed_by_server == 0
    # Every claim answered 200 or 409 already_claimed, exactly one 200 per task.
    assert result.claims_sent == 3 * result.creates_acked
    assert set(result.claim_statuses) <= {"200", "409 already_claimed"}
    assert result.claim_statuses.get("200") == result.creates_acked
    assert result.tasks_claimed == result.creates_acked
    assert result.tasks_several_winners == 0 and result.tasks_unclaimed == 0
    assert result.claims_other_answer == 0
