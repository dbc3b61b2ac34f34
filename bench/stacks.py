"""Where a server's time went: a py-spy raw profile (``bench.run --profile``) summed by part.

    python -m bench.stacks /tmp/taskbell-bench-*/b-single-max/profile.txt

Only the event loop's thread is counted (the aiosqlite worker threads are reported as
one line: py-spy counts their blocking queue wait as busy). Each sample goes to the
deepest frame that one of ``PARTS`` claims, so a layer's share includes what it calls
that no deeper part claims; a log line counts to whoever writes it (the request log's
access line is shown on its own line).
Samples that end in the loop itself (``Runner.run``: uvloop's C code, idle waits
included) are shown apart and left out of the percentages.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# (part, substrings of a frame "function (file:line)"); the first match names a frame.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("edge: header/body timers (protocol)", ("HeaderTimeoutProtocol.",)),
    ("edge: RequestLog", ("RequestLog.",)),
    ("edge: SecurityHeaders", ("SecurityHeaders.",)),
    ("edge: OriginGuard", ("server/origins.py",)),
    ("edge: WebSocketFastPath", ("WebSocketFastPath.",)),
    ("edge: RateLimit / limits.py", ("RateLimit.", "server/limits.py")),
    ("edge: BodyGuard", ("BodyGuard.", "send_error (server/guard.py")),
    ("edge: Gate (the one layer)", ("server/gate.py", "BodyWatch.")),
    ("token verification", ("server/auth.py", "jwt/")),
    ("JSON parse (wire.loads)", ("loads (server/wire.py",)),
    ("validation (pydantic, fields)", ("pydantic", "server/fields.py", "validate (server/wire")),
    ("starlette routing + exception layers", (
        "starlette/middleware/", "starlette/routing.py", "starlette/_exception_handler.py",
        "Starlette.__call__", "starlette/requests.py",
    )),
    ("starlette responses", ("starlette/responses.py", "server/api/common.py")),
    ("lean /ws protocol (wsserver, frames, socket_rules)", (
        "server/wsserver.py", "server/wssockets.py", "server/frames.py", "server/socket_rules.py",
    )),
    ("uvicorn HTTP protocol (httptools)", ("httptools_impl.py", "proxy_headers.py")),
    ("endpoints", ("server/api/",)),
    ("write service + store (incl. SQLAlchemy)", (
        "server/service.py", "server/writes.py", "server/sequencer.py", "sqlalchemy/",
        "aiosqlite/", "server/changes.py",
    )),
    ("hub + sockets", (
        "server/hub.py", "server/connection.py", "server/session.py", "websockets",
        "server/broker/", "server/feedlog.py",
    )),
    ("logging", ("logging/", "server/logs.py")),
)  # fmt: skip
# Writing a log line counts to whoever logs it; the request log's access line apart.
LOGGING = "logging"
ACCESS_LINE = "edge: the access line (logging)"
ACCESS_LOGGERS = ("edge: RequestLog", "edge: Gate (the one layer)")
LOOP = "event loop (uvloop C, idle included)"
OTHER = "other"
LINE_NUMBER = re.compile(r":\d+\)$")
WORKERS = "aiosqlite worker threads (blocking waits counted as busy)"


def part_of(frames: list[str]) -> str:
    """The part the deepest claimed frame of one main-thread stack belongs to."""
    if frames and frames[-1].startswith("Runner.run "):
        return LOOP
    logging = False
    for frame in reversed(frames):
        part = next((part for part, marks in PARTS if any(m in frame for m in marks)), None)
        if part == LOGGING:
            logging = True
        elif part is not None:
            return ACCESS_LINE if logging and part in ACCESS_LOGGERS else part
    return LOGGING if logging else OTHER


def summarise(lines: Iterable[str]) -> Counter[str]:
    """Samples per part, from py-spy's raw format ("frame;frame;... count")."""
    out: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].startswith("_run_module_as_main"):
            out[part_of(frames)] += int(count)
        else:
            out[WORKERS] += int(count)
    return out


def folded(lines: Iterable[str]) -> Counter[str]:
    """The main thread's stacks without line numbers, summed: a flame graph's input
    (``flamegraph.pl``, speedscope) small enough to keep beside the summary."""
    out: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack.startswith("_run_module_as_main") and count.isdigit():
            out[";".join(LINE_NUMBER.sub(")", frame) for frame in stack.split(";"))] += int(count)
    return out


def tree(stacks: Counter[str], min_share: float = 0.01) -> str:
    """A text flame graph of folded ``stacks``: each frame with its share of all the
    samples (itself and what it calls), children by share, below ``min_share`` left
    out; the frames every stack starts with (the interpreter, uvicorn's start) once."""
    total = sum(stacks.values())
    root: dict[str, Any] = {}
    for stack, n in stacks.items():
        node = root
        for frame in stack.split(";"):
            child = node.setdefault(frame, {"": 0})
            child[""] += n
            node = child
    lines: list[str] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        children = sorted(((k, v) for k, v in node.items() if k), key=lambda kv: -kv[1][""])
        while depth == 0 and len(children) == 1 and children[0][1][""] == total:
            children = sorted(
                ((k, v) for k, v in children[0][1].items() if k), key=lambda kv: -kv[1][""]
            )
        for frame, child in children:
            if child[""] >= min_share * total:
                lines.append(f"{100 * child[''] / total:5.1f} % {'  ' * depth}{frame}")
                walk(child, depth + 1)

    walk(root, 0)
    return "\n".join(lines)


def report(counts: Counter[str]) -> str:
    busy = sum(n for part, n in counts.items() if part not in (LOOP, WORKERS))
    rows = [(part, n) for part, n in counts.most_common() if part not in (LOOP, WORKERS)]
    edge = sum(n for part, n in rows if part.startswith("edge:"))
    lines = [f"main thread, Python at work: {busy} samples (= 100 %)"]
    lines += [f"{100 * n / busy:6.1f} %  {n:6d}  {part}" for part, n in rows]
    lines.append(f"{100 * edge / busy:6.1f} %  {edge:6d}  all edge layers together")
    lines.append(f"   (not counted)  {counts[LOOP]:6d}  {LOOP}")
    lines.append(f"   (not counted)  {counts[WORKERS]:6d}  {WORKERS}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stacks", description=__doc__.split("\n")[0])
    p.add_argument("profile", type=Path, help="a py-spy raw profile (collapsed stacks)")
    p.add_argument("--tree", action="store_true", help="also print the text flame graph")
    p.add_argument("--folded", type=Path, help="also write the main thread's stacks here")
    args = p.parse_args(argv)
    lines = args.profile.read_text().splitlines()
    print(report(summarise(lines)))
    stacks = folded(lines)
    if args.tree:
        print("\nmain thread, every sample (the loop's own included), frames >= 1 %:")
        print(tree(stacks))
    if args.folded is not None:
        args.folded.write_text("".join(f"{s} {n}\n" for s, n in sorted(stacks.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
