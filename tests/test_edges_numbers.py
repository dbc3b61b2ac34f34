"""Whole numbers in query strings and headers (``server.fields.whole_number``): what is
not a short run of ASCII digits is a clear 400, never a 500 from ``int()`` (which takes
"²" past ``str.isdigit`` and refuses thousands of digits)."""

from __future__ import annotations

import pytest

from server.delivery.webhooks.sender import RETRY_AFTER_MAX_S, _retry_after
from server.fields import whole_number
from tests.support.app import Live
from tests.support.tasks import assert_error

UNUSABLE = ["²", "\u0663", "\uff11", "9" * 5000, "-1", "+5", " 5", "5 ", "", "1e3", "0x10"]


@pytest.mark.parametrize("raw", UNUSABLE)
def test_what_is_no_short_run_of_ascii_digits_is_no_whole_number(raw: str) -> None:
    assert whole_number(raw, 200) is None
    assert whole_number(raw.encode(), 200) is None


def test_whole_numbers_up_to_the_bound_and_not_beyond() -> None:
    assert [whole_number(r, 200) for r in ("0", "7", "200", "201", "0200")] == [
        0,
        7,
        200,
        None,
        None,
    ]
    assert whole_number(b"1048576", 1 << 20) == 1 << 20
    assert whole_number(str(2**63 - 1), 2**63 - 1) == 2**63 - 1


def test_a_receivers_retry_after_in_odd_digits_is_ignored_and_a_huge_one_is_capped() -> None:
    assert _retry_after("²") is None
    assert _retry_after("12") == 12.0
    assert _retry_after(" 3 ") == 3.0
    assert _retry_after("9" * 5000) == float(RETRY_AFTER_MAX_S)


@pytest.mark.parametrize("raw", ["²", "9" * 5000])
async def test_odd_limits_and_seqs_are_400_not_500(embedded: Live, raw: str) -> None:
    async with embedded.person("alice") as c:
        assert_error(await c.get("/api/v1/me/tasks", params={"limit": raw}), 400, "bad_query")
        assert_error(await c.get("/events", params={"since": raw}), 400, "bad_since")
    async with embedded.producer() as c:
        ep = (await c.post("/api/v1/webhooks", json={"url": "https://e.example/"})).json()
        deliveries = f"/api/v1/webhooks/{ep['id']}/deliveries"
        assert_error(await c.get(deliveries, params={"limit": raw}), 400, "bad_query")
