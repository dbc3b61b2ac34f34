"""The hub's state: per feed key with local followers, per person with local connections,
and which feeds a person follows (their audience, own feed first)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from server.connection import Connection, Position
from server.feeds import user_feed
from server.sequencer import Sequencer


@dataclass(eq=False)
class FeedState:
    """One feed with local followers: their positions, and its sequencer."""

    key: str
    conns: dict[Connection, Position] = field(default_factory=dict)
    seq: Sequencer = field(default_factory=Sequencer)
    joining: int = 0  # views of this feed being read (joins, refollows)
    catch_up: asyncio.Task[None] | None = None
    again: bool = False


@dataclass(eq=False)
class UserState:
    """One person's local connections, and their refollow task."""

    conns: set[Connection] = field(default_factory=set)
    joining: int = 0
    phase: int = 0  # which tick of the heartbeat round pings this user's connections
    version: int = 0  # bumped by every refollow call
    refollow: asyncio.Task[None] | None = None
    again: bool = False
    # The last messages outside the seq flow (``seen``) sent here: the broker hands the
    # same one over twice (at publish, then from Redis), and a repeat is dropped.
    side: deque[str] = field(default_factory=lambda: deque(maxlen=8))


def with_own(feeds: list[str], user: str) -> list[str]:
    """The audience with the own feed first (it is never left), each feed once."""
    own = user_feed(user)
    return [own, *dict.fromkeys(f for f in feeds if f != own)]
