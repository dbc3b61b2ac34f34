"""A substitution that starts and ends while the substitute's panel is open: the
"Standing in for" section comes by itself at the start and goes at the end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Browsing
from tests.browser.support import Producer, new_id

pytestmark = pytest.mark.browser


def test_a_substitution_starting_and_ending_while_the_panel_is_open(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    absent = f"{user}-away"
    producer.create(absent, "Sign the supplier contract")
    page = browsing.open(user)
    section = page.locator(f'[data-testid="feed-section"][data-feed="user:{absent}"]')
    expect(section).to_have_count(0)

    now = datetime.now(UTC)
    body = {
        "id": new_id("sub"),
        "user": absent,
        "substitute": user,
        "starts_at": (now + timedelta(seconds=2)).isoformat(),
        "ends_at": (now + timedelta(seconds=7)).isoformat(),
    }
    assert producer.client.post("/substitutions", json=body).status_code == 201
    expect(section).to_have_count(0)  # pending: nothing yet
    expect(section.get_by_test_id("feed-count")).to_have_text("1", timeout=10_000)
    expect(section.get_by_test_id("standin-item")).to_have_count(1)
    page.screenshot(path=str(output_dir / "panel-standin-started.png"))
    expect(section).to_have_count(0, timeout=15_000)
