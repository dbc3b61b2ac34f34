"""``python -m bridge --url URL [--token TOKEN | --token-file PATH] [--locale TAG]``

The token may also come from ``TASKBELL_TOKEN``. ``--token-file`` is read again on every
reconnect, so a host application can refresh it. The state file defaults to
``$XDG_STATE_HOME/taskbell/bridge-<user>@<host>.json``. Exit status: 0 on SIGTERM or
Ctrl-C, 2 for bad arguments, 3 when the server refuses the token. The notifications'
words are in ``--locale``, else the token's ``locale`` claim, else the desktop's language
(``LC_ALL``, ``LC_MESSAGES``, ``LANG``), else English.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import webbrowser
from collections.abc import Callable
from pathlib import Path

import jwt

from bridge.client import Bridge, TokenRejected
from bridge.desktop import make_desktop
from bridge.i18n import Texts, choose, desktop_locale, token_locale
from bridge.state import default_state_path

log = logging.getLogger("taskbell.bridge")


def _token_source(args: argparse.Namespace) -> Callable[[], str] | None:
    if args.token_file:
        path = Path(args.token_file)
        return lambda: path.read_text().strip()
    token = args.token or os.environ.get("TASKBELL_TOKEN", "")
    if not token:
        return None
    return lambda: token


def _user_of(token: str) -> str:
    """The token's subject, for naming the state file (not a check: the server checks)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "user"
    return str(claims.get("sub") or "user")


def _open(url: str) -> None:
    loop = asyncio.get_running_loop()
    loop.run_in_executor(None, webbrowser.open, url)


async def _run(bridge: Bridge) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        await bridge.run(stop)
    except TokenRejected as exc:
        print(
            f"taskbell-bridge: the server refuses the token ({exc}); get a new one", file=sys.stderr
        )
        return 3
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bridge", description="Taskbell desktop notifications"
    )
    parser.add_argument("--url", required=True, help="server base URL, e.g. https://tasks.example")
    parser.add_argument("--token", default=None, help="user token (or TASKBELL_TOKEN)")
    parser.add_argument("--token-file", default=None, help="file holding the user token")
    parser.add_argument("--state", default=None, help="state file (default: XDG state dir)")
    parser.add_argument(
        "--backend",
        choices=["auto", "freedesktop", "portable"],
        default="auto",
        help="freedesktop (D-Bus, Linux) or portable (desktop-notifier)",
    )
    parser.add_argument("--max-backoff", type=float, default=30.0, help="seconds, at most")
    parser.add_argument(
        "--handoff-seconds",
        type=float,
        default=10.0,
        help="how long a completed step's notification waits for its next step (0: none)",
    )
    parser.add_argument(
        "--preferences-seconds",
        type=float,
        default=60.0,
        help="how often to read the person's notification preferences again while connected",
    )
    parser.add_argument(
        "--locale",
        default=None,
        help="language of the notifications, e.g. de-AT (default: "
        "the token's locale claim, else LANG)",
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )

    token = _token_source(args)
    if token is None:
        parser.error("a token is needed: --token, --token-file or TASKBELL_TOKEN")
    state = Path(args.state) if args.state else default_state_path(args.url, _user_of(token()))
    texts = Texts(choose([args.locale, token_locale(token()), desktop_locale(os.environ)]))
    desktop = make_desktop(args.backend, _open, args.url.rstrip("/") + "/", texts)
    bridge = Bridge(
        args.url,
        token,
        state,
        desktop,
        max_backoff_s=args.max_backoff,
        handoff_s=args.handoff_seconds,
        prefs_refresh_s=args.preferences_seconds,
    )
    return asyncio.run(_run(bridge))


if __name__ == "__main__":
    sys.exit(main())
