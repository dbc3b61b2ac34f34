"""Structured logs: one JSON object per line on stderr. Nothing here ever logs a token:
tokens travel in headers and WebSocket messages, which are not logged, and the panel
keeps its token in the URL fragment, which browsers do not send.

Every line logged while a request is handled carries its ``request_id`` (and the
``tenant`` where one is known): the ASGI gate (``server.gate``), in front of everything,
takes the id from ``X-Request-ID`` when it is sane (at most 64 of ``[A-Za-z0-9._-]``) or
makes one up, echoes it in the answer's ``X-Request-ID``, and writes one access line per
HTTP request (``access``, logger ``taskbell.access``: method, path without the query
string, status, duration): never a header's value or a query string, where a token may
travel."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import random
import re
import sys
import threading
import time
from typing import Any

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "taskbell_request_id", default=None
)
tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("taskbell_tenant", default=None)
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
access_log = logging.getLogger("taskbell.access")

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    _second: tuple[int, str] = (-1, "")  # the last whole second formatted, one object

    def _stamp(self, record: logging.LogRecord) -> str:
        """``record.created`` as UTC ISO-8601 to the millisecond (the whole seconds are
        formatted once per second)."""
        second, text = self._second
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self._stamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        for key, var in (("request_id", request_id), ("tenant", tenant)):
            if key not in entry and (known := var.get()) is not None:
                entry[key] = known
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


def sane_request_id(raw: str | None) -> str:
    """``raw`` when it is a usable request id (1 to 64 of ``[A-Za-z0-9._-]``), else a
    new one (16 hex digits). New ids need to be unique, not unpredictable: they come from
    ``random`` (reseeded in a forked child), not a system call each."""
    if raw is not None and _SANE_ID.fullmatch(raw):
        return raw
    return f"{random.getrandbits(64):016x}"


def access(method: str, path: str, status: int, duration_ms: float) -> None:
    """The access line of one HTTP request (``taskbell.access``, INFO). Made as
    ``Logger.info`` would make it, without looking for the caller's frame (the line
    names the request, not a line of code) and without building a ``LogRecord`` from
    nothing: every attribute but the time and the request's own is the same on every
    access line of a process and thread, so a record is a copy of the first one's."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    extra = {"method": method, "path": path, "status": status, "duration_ms": duration_ms}
    access_log.handle(_access_record((method, path, status), extra))


# The first access record's attributes, for the process and thread that made it.
_access_base: tuple[tuple[int, int], dict[str, Any]] | None = None


def _access_record(args: tuple[str, str, int], extra: dict[str, Any]) -> logging.LogRecord:
    global _access_base
    if logging.getLogRecordFactory() is not logging.LogRecord:  # someone else's records
        return _make_access_record(args, extra)
    here = (os.getpid(), threading.get_ident())
    if _access_base is None or _access_base[0] != here:
        first = _make_access_record(args, {})
        _access_base = (here, dict(first.__dict__))
    record: logging.LogRecord = logging.LogRecord.__new__(logging.LogRecord)
    fields = record.__dict__
    fields.update(_access_base[1])
    now = time.time()
    fields["relativeCreated"] += (now - fields["created"]) * 1000
    fields["created"] = now
    fields["msecs"] = int((now - int(now)) * 1000) + 0.0  # as LogRecord does (gh-89047)
    if "taskName" in fields:  # Python 3.12 and later
        task = asyncio.current_task() if _loop_running() else None
        fields["taskName"] = task.get_name() if task is not None else None
    fields["args"] = args
    fields.update(extra)
    return record


def _make_access_record(args: tuple[str, str, int], extra: dict[str, Any]) -> logging.LogRecord:
    return access_log.makeRecord(
        access_log.name, logging.INFO, __file__, 0, "%s %s %s", args, None, "access", extra
    )


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
