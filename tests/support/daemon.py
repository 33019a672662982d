"""The real `newsmon` program, run by tests as a separate process (`python -m monitor`).

`newsmon(config, *args)` runs a command to completion and returns (exit code, stdout, stderr);
`start_newsmon(config, *args)` starts one (usually `run`) and returns the process, which the
test stops with a signal. Both run from the repository root, as a user would.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[2]


async def start_newsmon(
    config: Path,
    *args: str,
    stdout: int | IO[bytes] = asyncio.subprocess.PIPE,
    stderr: int | IO[bytes] = asyncio.subprocess.PIPE,
) -> asyncio.subprocess.Process:
    """Start `newsmon --config CONFIG ARGS...`; stderr (the log) is piped unless redirected.

    A test that SIGKILLs the daemon should send the log to a file: its worker processes
    inherit a pipe, and asyncio reports the parent gone only once every pipe has closed.
    """
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "--config",
        str(config),
        *args,
        stdout=stdout,
        stderr=stderr,
        cwd=REPO,
    )


async def newsmon(config: Path, *args: str, timeout: float = 90) -> tuple[int, str, str]:
    """Run `newsmon --config CONFIG ARGS...` to its end: (exit code, stdout, stderr)."""
    proc = await start_newsmon(config, *args)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    # Hostile feeds may put any bytes in titles: never fail the test on decoding the log.
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
