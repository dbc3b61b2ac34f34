"""Structured logs: one JSON object per line on stderr. Nothing here ever logs a token:
tokens travel in headers and WebSocket messages, which are not logged, and the panel
keeps its token in the URL fragment, which browsers do not send."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class PerSocketNoise(logging.Filter):
    """Drops uvicorn's per-socket INFO lines ("connection open", "WebSocket /ws
    [accepted]", "connection closed"): at thousands of sockets they cost more CPU than
    the sockets themselves and say nothing /readyz does not."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        msg = str(record.msg)
        return not (msg.startswith("connection ") or '"WebSocket ' in msg)


class ClientFaults(logging.Filter):
    """uvicorn logs some faults of a *client* as server errors with a traceback (a
    WebSocket text frame that is not UTF-8: the client gets 1007 and nothing on the
    server is wrong). Those become one INFO line without the traceback, so that ERROR
    keeps meaning "look at the server"."""

    MESSAGES = ("Invalid UTF-8 sequence received from client",)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith(self.MESSAGES):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = record.exc_text = None
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def setup(level: str = "info") -> dict[str, Any]:
    """Configure the root logger and return a uvicorn ``log_config`` that matches."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {
            "per_socket": {"()": PerSocketNoise},
            "client_faults": {"()": ClientFaults},
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {
                "level": level.upper(),
                "filters": ["per_socket", "client_faults"],
            },
            "uvicorn.access": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        },
    }
