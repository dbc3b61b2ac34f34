"""The bridge's connection loop: one WebSocket to ``/ws`` following every feed of the
person (own, role queues, people stood in for), resumed with ``since`` and
``since_feeds`` after every disconnect (network loss, server restart, 4008), with
exponential backoff and jitter between attempts. Each message is applied to a copy of
the state; the copy replaces the state (and the file) only after its desktop actions were
done, so a failed action is retried from the replay instead of being lost.

The person's notification preferences (``bridge.quiet``) are fetched over HTTP before
every connection and again every ``prefs_refresh_s`` while connected: a desktop
notification they silence (desktop switched off, the process muted, quiet hours unless
the task is urgent) is not raised. The panel and the state's bookkeeping go on as before:
a silenced task is known, just never shown (so nothing is closed for it later either).

A completed step's notification waits for its next step (``Close`` with ``after``): the
bridge keeps a timer per such notification, which the next step's ``Show`` cancels (it
replaces the notification instead); when the bridge stops, the waiting ones are closed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from bridge.desktop import Desktop
from bridge.quiet import DesktopPrefs, may_notify, read
from bridge.state import HANDOFF_SECONDS, BridgeState, NotificationId, Show, Verdict

log = logging.getLogger("taskbell.bridge")

# The /ws close code of a refused or expired token (docs/protocol.md; the server's is
# server.errors.CloseCode.NOT_AUTHENTICATED: the bridge does not import the server).
NOT_AUTHENTICATED = 4001


class AuthMessage(TypedDict):
    """The first message on ``/ws`` (docs/protocol.md), the bridge's own copy."""

    type: Literal["auth"]
    token: str
    since: NotRequired[int]
    since_feeds: NotRequired[dict[str, int]]


PONG = '{"type":"pong"}'
PREFERENCES_PATH = "/api/v1/me/preferences"
PREFERENCES_SECONDS = 60.0
"""How often a connected bridge reads the person's preferences again."""


def own_feed(token: str) -> str | None:
    """``user:<sub>`` of a token (read without checking it: the server does that), the
    feed whose heartbeat this bridge compares with its state."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return f"user:{sub}" if isinstance(sub, str) else None


class TokenRejected(Exception):
    """The server refuses the token (4001) and no other token is available."""


def ws_url(server_url: str) -> str:
    """``http(s)://host[:port][/prefix]`` → ``ws(s)://host[:port][/prefix]/ws``."""
    parts = urlsplit(server_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", "", ""))


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    exp = min(cap, base * 2.0**attempt)
    return exp / 2 + random.random() * exp / 2


class Bridge:
    def __init__(
        self,
        server_url: str,
        token: Callable[[], str],
        state_path: Path,
        desktop: Desktop,
        *,
        max_backoff_s: float = 30.0,
        handoff_s: float = HANDOFF_SECONDS,
        prefs_refresh_s: float = PREFERENCES_SECONDS,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.state_path = state_path
        self.desktop = desktop
        self.max_backoff_s = max_backoff_s
        self.state = BridgeState.load(state_path, own_feed(token()))
        self.state.handoff_s = handoff_s
        self._desktop_up = False
        # Notifications of completed steps waiting for the next one: id → its closing timer.
        self._closing: dict[NotificationId, asyncio.TimerHandle] = {}
        self._closers: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self.prefs = DesktopPrefs()
        self.prefs_refresh_s = prefs_refresh_s

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set. Raises ``TokenRejected``."""
        attempt = 0
        while not stop.is_set():
            synced = False
            try:
                if not self._desktop_up:
                    await self.desktop.start()
                    self._desktop_up = True
                    # Left waiting by a bridge that stopped before their window ended.
                    for task_id, nid in list(self.state.handoff.items()):
                        if nid not in self._closing:
                            self._close_later(task_id, nid, self.state.handoff_s)
                synced = await self._session(stop)
            except TokenRejected:
                raise
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                log.warning("connection lost: %s", exc or type(exc).__name__)
            except Exception as exc:  # the desktop side failed: reconnect it too
                log.warning("desktop notifications failed: %r", exc)
                with contextlib.suppress(Exception):
                    await self.desktop.stop()
                self._desktop_up = False
            if stop.is_set():
                break
            attempt = 0 if synced else attempt + 1
            delay = backoff(attempt, cap=self.max_backoff_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        with contextlib.suppress(Exception):
            await self._close_waiting()
        with contextlib.suppress(Exception):
            await self.desktop.stop()

    def _close_later(self, task_id: str, nid: NotificationId, after: float) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._closing.pop(nid, None)
            closer = asyncio.ensure_future(self._close_handoff(task_id, nid))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)

        self._closing[nid] = loop.call_later(after, fire)

    async def _close_handoff(self, task_id: str, nid: NotificationId) -> None:
        """The window ended with no next step: close the notification."""
        async with self._lock:
            if self.state.handoff.get(task_id) != nid:
                return
            with contextlib.suppress(Exception):
                await self.desktop.close(nid)
            self.state.closed(task_id)
            self.state.save(self.state_path)

    async def _close_waiting(self) -> None:
        """Stopping: no next step will replace the waiting notifications any more."""
        for timer in self._closing.values():
            timer.cancel()
        self._closing.clear()
        for task_id, nid in list(self.state.handoff.items()):
            await self._close_handoff(task_id, nid)

    async def fetch_prefs(self) -> None:
        """Read the person's preferences; on any failure keep the last ones read (the
        defaults at first: notify, as a bridge without preferences does)."""
        url = self.server_url + PREFERENCES_PATH
        try:
            async with httpx.AsyncClient(timeout=10.0) as http:
                resp = await http.get(url, headers={"Authorization": f"Bearer {self.token()}"})
            if resp.status_code != 200:
                log.info("preferences not read: the server answered %d", resp.status_code)
                return
            prefs = read(resp.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.info("preferences not read: %s", exc or type(exc).__name__)
            return
        if prefs != self.prefs:
            log.info("preferences changed: %s", prefs)
            self.prefs = prefs

    async def _refresh_prefs(self) -> None:
        while True:
            await asyncio.sleep(self.prefs_refresh_s)
            await self.fetch_prefs()

    async def _session(self, stop: asyncio.Event) -> bool:
        """One connection; True when it got as far as being in sync (so the next attempt
        starts with a short delay)."""
        await self.fetch_prefs()
        token = self.token()
        synced = False
        async with connect(
            ws_url(self.server_url), open_timeout=10, ping_interval=20, ping_timeout=20
        ) as ws:
            auth: AuthMessage = {"type": "auth", "token": token}
            if self.state.primed and not self.state.resync:
                auth["since"] = self.state.seq
                if others := self.state.since_feeds():
                    auth["since_feeds"] = others
            await ws.send(orjson.dumps(auth).decode())
            closing = asyncio.create_task(stop.wait())
            refreshing = asyncio.create_task(self._refresh_prefs())
            try:
                while True:
                    receiving = asyncio.create_task(ws.recv())
                    done, _ = await asyncio.wait(
                        {receiving, closing}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if closing in done:
                        receiving.cancel()
                        await ws.close()
                        return synced
                    try:
                        raw = receiving.result()
                    except ConnectionClosed as exc:
                        rcvd = exc.rcvd
                        refused = rcvd is not None and rcvd.code == NOT_AUTHENTICATED
                        # A token file may hold a fresh token by now; else give up.
                        if refused and self.token() == token:
                            reason = rcvd.reason if rcvd is not None else ""
                            raise TokenRejected(reason or "token rejected") from None
                        raise
                    message = orjson.loads(raw)
                    kind = message.get("type")
                    if kind in ("snapshot", "synced"):
                        synced = True
                    elif kind == "ping":
                        await ws.send(PONG)
                    verdict = await self._apply(message)
                    if verdict == "gap":
                        log.info("seq gap: resuming from %d", self.state.seq)
                        return synced
                    if verdict == "resync":
                        log.warning("the server's heartbeat differs: asking for a snapshot")
                        return synced
            finally:
                closing.cancel()
                refreshing.cancel()

    async def _apply(self, message: dict[str, Any]) -> Verdict:
        """Apply one message; ``"gap"`` (reconnect with ``since``) or ``"resync"``
        (reconnect for a snapshot) end the connection."""
        async with self._lock:
            state = copy.deepcopy(self.state)
            verdict, actions = state.apply(message)
            if verdict == "gap":
                return verdict
            if verdict == "ignored":
                return verdict
            now = datetime.now(UTC)
            for action in actions:
                if isinstance(action, Show) and not may_notify(self.prefs, action.task, now):
                    await self._silenced(state, action)
                elif isinstance(action, Show):
                    if action.replaces is not None and (
                        timer := self._closing.pop(action.replaces, None)
                    ):
                        timer.cancel()  # the next step takes this notification over
                    url = action.task.get("url") or self.server_url + "/"
                    nid = await self.desktop.show(action.task, url, action.replaces)
                    state.shown_as(action.task["id"], nid)
                elif action.after > 0:
                    self._close_later(action.task_id, action.notification, action.after)
                else:
                    if timer := self._closing.pop(action.notification, None):
                        timer.cancel()
                    await self.desktop.close(action.notification)
                    state.closed(action.task_id)
            state.save(self.state_path)
            self.state = state
            return verdict

    async def _silenced(self, state: BridgeState, action: Show) -> None:
        """The preferences silence ``action``: raise nothing. An update of a notification
        already shown leaves it as it is; a next step that would have taken over a
        completed step's waiting notification closes that one now (its window's timer
        no longer would: the state handed it to the next step)."""
        log.debug("silenced by the preferences: %s", action.task["id"])
        replaced = action.replaces
        if replaced is None or state.shown.get(action.task["id"]) == replaced:
            return
        if timer := self._closing.pop(replaced, None):
            timer.cancel()
        await self.desktop.close(replaced)
