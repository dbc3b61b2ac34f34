"""The Procfile's lines, run as a platform runs them: ``sh -c`` from the repository root,
in a process group of its own (dash does not exec ``X=... cmd``, so the program is the
shell's child, and only signalling the whole group reaches it)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Mapping

from tests.support.server_proc import REPO_ROOT


def procfile_command(name: str) -> str:
    """The command of the Procfile's ``name:`` line."""
    prefix = f"{name}:"
    text = (REPO_ROOT / "Procfile").read_text()
    return next(line for line in text.splitlines() if line.startswith(prefix))[len(prefix) :]


async def start_line(command: str, env: Mapping[str, str]) -> asyncio.subprocess.Process:
    """``command`` under ``sh -c`` in a new session (its pid is the group's id)."""
    return await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        command,
        cwd=REPO_ROOT,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
