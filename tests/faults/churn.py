"""Connect/disconnect churn against a running server, in a process of its own so that
the server under test (in the test's process) gets a core to itself.

``python -m tests.faults.churn WS_URL SECONDS CONCURRENCY SECRET OWNER...`` opens and
drops sockets as fast as they go for SECONDS, and longer until ``MIN_SESSIONS`` have
been (a slow machine still makes enough for a leak to show; at most ``CAP_SECONDS``),
in every way a client can leave: after
its snapshot, after a replay (``since``), without a close frame, before
authenticating, right after sending auth. It prints one JSON line: sessions, modes,
errors.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections import Counter
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from server.auth import mint_token

MODES = ("snapshot", "replay", "abort", "no-auth", "auth-and-go")
MIN_SESSIONS = 600
CAP_SECONDS = 90.0


async def churn(ws_url: str, seconds: float, concurrency: int, tokens: list[str]) -> dict[str, Any]:
    modes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    cap = loop.time() + max(seconds, CAP_SECONDS)

    def going() -> bool:
        now = loop.time()
        done = sum(modes.values()) + sum(errors.values())
        return now < deadline or (done < MIN_SESSIONS and now < cap)

    async def one(rng: random.Random) -> None:
        mode = rng.choice(MODES)
        auth: dict[str, Any] = {"type": "auth", "token": rng.choice(tokens)}
        if mode == "replay":
            auth["since"] = 1
        async with connect(ws_url, open_timeout=10, compression=None) as ws:
            if mode != "no-auth":
                await ws.send(orjson.dumps(auth).decode())
                if mode != "auth-and-go":
                    while orjson.loads(await ws.recv())["type"] not in ("snapshot", "synced"):
                        pass
                    if mode == "abort":
                        ws.transport.abort()
        modes[mode] += 1

    async def worker(w: int) -> None:
        rng = random.Random(w)
        while going():
            try:
                await one(rng)
            except (ConnectionClosed, OSError, InvalidHandshake, TimeoutError) as exc:
                errors[type(exc).__name__] += 1

    began = loop.time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = loop.time() - began
    sessions = sum(modes.values()) + sum(errors.values())
    return {"sessions": sessions, "seconds": elapsed, "modes": modes, "errors": errors}


def main(argv: list[str]) -> None:
    ws_url, seconds, concurrency, secret, *owners = argv
    tokens = [mint_token(secret, owner, 3600) for owner in owners]
    result = asyncio.run(churn(ws_url, float(seconds), int(concurrency), tokens))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main(sys.argv[1:])
