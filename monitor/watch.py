"""Watching the configuration: the config file and its rule files, polled for changes.

``watch_files`` calls back once the files changed and then held still; the daemon reloads.
Polling (a stat of a handful of files a second) needs no dependency and works on every
filesystem, network mounts included, where change notifications may never arrive.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path

log = logging.getLogger("newsmon")

# How often the config and rule files are looked at: a stat of a handful of files, and the bound
# on how long an edit takes to apply.
WATCH_TICK = timedelta(seconds=1)
# A change is applied once the files stayed the same this long: an editor's save (write to a
# temporary file, rename) or copying a directory of rule files takes several steps, and reading
# half of them would only report problems that are gone a moment later.
WATCH_SETTLE = timedelta(seconds=0.3)

# Every watched file by path: (inode, size, mtime in ns). The inode catches an editor that saves
# by renaming a new file into place within one mtime tick.
Snapshot = dict[str, tuple[int, int, int]]


def snapshot_files(config_path: str, patterns: Sequence[str]) -> Snapshot:
    """The config file and every file the `rule_files` patterns match, as `load_config` finds
    them (relative to the config's directory). A missing file is simply absent."""
    base = Path(config_path).parent.absolute()
    paths = [config_path]
    for pattern in patterns:
        paths += glob.glob(os.path.join(base, pattern), recursive=True)
    found: Snapshot = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        found[path] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


async def watch_files(
    look: Callable[[], Snapshot],
    changed: Callable[[], Awaitable[object]],
    *,
    tick: float = WATCH_TICK.total_seconds(),
    settle: float = WATCH_SETTLE.total_seconds(),
) -> None:
    """Await `changed()` each time `look()` returns something new that then holds for `settle`.

    Polls every `tick` seconds until cancelled; `look` runs in a thread (a recursive glob over a
    large tree must not stall polls). A change made while `changed()` runs is seen on the next
    look, never lost: the snapshot compared against is the one taken before it ran. An exception
    from `changed()` is logged and watching goes on.
    """
    seen = await asyncio.to_thread(look)
    while True:
        await asyncio.sleep(tick)
        current = await asyncio.to_thread(look)
        if current == seen:
            continue
        while True:  # wait until the files hold still
            await asyncio.sleep(settle)
            again = await asyncio.to_thread(look)
            if again == current:
                break
            current = again
        if current == seen:  # changed and changed back
            continue
        seen = current
        try:
            await changed()
        except Exception:
            log.exception("reload after a file change failed")
