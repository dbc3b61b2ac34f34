"""``uvicorn_config(app, settings, **overrides)``: how Taskbell is served, in one place
(``python -m server`` and the tests' real servers both build their uvicorn here).

- HTTP: the guarded protocol (deadlines for slow request heads and bodies,
  ``server.guard``), no ``Server`` header, ``X-Forwarded-For`` from trusted proxies
  (``FORWARDED_ALLOW_IPS``, uvicorn's own setting: 127.0.0.1 unless set).
- WebSocket: ``/ws`` on Taskbell's own protocol (``server.wsserver``), any other path
  on uvicorn's ``websockets-sansio``; no per-message deflate (task messages are small,
  per-socket zlib state would cost ~40 KB each); keepalive pings every 20 s.
"""

from __future__ import annotations

from typing import Any

import uvicorn
from starlette.applications import Starlette

from server.guard import http_protocol
from server.settings import Settings
from server.wsserver import protocol_for

PING_INTERVAL_S = 20.0


def options(app: Starlette, settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` keyword arguments for serving ``app`` (``app`` itself aside)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": http_protocol(settings.header_timeout_s, settings.body_timeout_s),
        "ws": protocol_for(app),
        "ws_per_message_deflate": False,
        "ws_max_size": settings.max_ws_message_bytes,
        "ws_ping_interval": PING_INTERVAL_S,
        "ws_ping_timeout": PING_INTERVAL_S,
        "timeout_graceful_shutdown": 10,
        "proxy_headers": True,
        "server_header": False,
    }


def uvicorn_config(app: Starlette, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration serving ``app`` with ``settings``; ``overrides`` are
    more or other ``uvicorn.Config`` options (e.g. ``log_config``, ``port``)."""
    return uvicorn.Config(app, **{**options(app, settings), **overrides})
