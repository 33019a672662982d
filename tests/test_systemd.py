"""monitor.systemd against a real unix datagram socket, as systemd listens on one."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.systemd import SystemdNotify, Watchdog, watchdog_interval

REPO = Path(__file__).resolve().parent.parent


class Manager:
    """The service manager's end: a bound datagram socket collecting what arrives."""

    def __init__(self, address: str) -> None:
        self.address = address  # as NOTIFY_SOCKET spells it
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)

    def received(self) -> list[str]:
        """Every datagram that arrived so far, decoded."""
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode("utf-8"))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest) -> Iterator[Manager]:
    # A short directory of our own: unix socket paths are limited to 107 bytes, which pytest's
    # tmp_path can exceed.
    with tempfile.TemporaryDirectory(prefix="nm-") as directory:
        if request.param == "path":
            address = os.path.join(directory, "notify")
        else:
            address = f"@newsmon-test-{secrets.token_hex(6)}"
        manager = Manager(address)
        yield manager
        manager.close()


def test_notifications_arrive_as_systemd_reads_them(manager: Manager) -> None:
    notify = SystemdNotify.from_env({"NOTIFY_SOCKET": manager.address})
    assert notify.enabled
    assert notify.ready(status="polling 12 feeds")
    assert notify.status("reloading config")
    assert notify.watchdog()
    assert notify.reloading()
    assert notify.stopping()
    assert manager.received() == [
        "READY=1\nSTATUS=polling 12 feeds",
        "STATUS=reloading config",
        "WATCHDOG=1",
        "RELOADING=1",
        "STOPPING=1",
    ]


def test_a_status_cannot_smuggle_other_assignments(manager: Manager) -> None:
    notify = SystemdNotify(manager.address)
    # Text that came from a feed or an error message, with a line break in it.
    assert notify.status("feed failed: evil\nREADY=1\nMAINPID=1\x1b[2J")
    assert manager.received() == ["STATUS=feed failed: evil READY=1 MAINPID=1 [2J"]


def test_without_a_socket_every_call_is_a_harmless_no_op() -> None:
    notify = SystemdNotify.from_env({})
    assert not notify.enabled
    assert notify.ready() is False
    assert notify.watchdog() is False


def test_a_socket_that_is_gone_or_unsupported_is_reported_not_raised(tmp_path: Path) -> None:
    assert SystemdNotify(str(tmp_path / "nobody-listens")).ready() is False
    assert SystemdNotify("vsock:2:1234").ready() is False
    assert SystemdNotify("relative/path").ready() is False


def test_a_real_process_notifies_through_its_environment(manager: Manager) -> None:
    code = (
        "from monitor.systemd import SystemdNotify\n"
        "import sys\n"
        "sys.exit(0 if SystemdNotify.from_env().ready(status='up') else 1)\n"
    )
    env = {**os.environ, "NOTIFY_SOCKET": manager.address}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, timeout=30)
    assert done.returncode == 0
    assert manager.received() == ["READY=1\nSTATUS=up"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, timedelta(seconds=60)),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "4242"}, timedelta(seconds=60)),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: timedelta | None) -> None:
    assert watchdog_interval(env, pid=4242) == expected


def test_watchdog_interval_defaults_to_this_process() -> None:
    env = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    assert watchdog_interval(env) == timedelta(seconds=2)


class Alive:
    """A fake liveness check the test flips: answers, says no, raises or hangs."""

    def __init__(self) -> None:
        self.mode = "yes"
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        if self.mode == "raise":
            raise ConnectionError("database unreachable")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        return self.mode == "yes"


async def test_watchdog_pings_only_while_alive(manager: Manager) -> None:
    alive = Alive()
    dog = Watchdog(SystemdNotify(manager.address), timedelta(seconds=0.4), alive)
    for mode, pinged in [("yes", True), ("no", False), ("raise", False), ("yes", True)]:
        alive.mode = mode
        assert await dog.tick() is pinged, mode
        assert manager.received() == (["WATCHDOG=1"] if pinged else []), mode
    # A check that hangs past a quarter of the interval counts as dead, and does not hang us.
    alive.mode = "hang"
    assert await asyncio.wait_for(dog.tick(), 1.0) is False
    assert manager.received() == []
    assert (dog.pings, dog.skipped) == (2, 3)


async def test_watchdog_run_ticks_every_half_interval(manager: Manager) -> None:
    alive = Alive()
    dog = Watchdog(SystemdNotify(manager.address), timedelta(seconds=0.2), alive)
    task = asyncio.create_task(dog.run())
    try:
        # Ticks at 0, 0.1, 0.2, 0.3 s: four in 0.35 s (fewer on a loaded machine, never more).
        await asyncio.sleep(0.35)
        assert 2 <= dog.pings <= 5
        assert manager.received() == ["WATCHDOG=1"] * dog.pings
        alive.mode = "no"
        await asyncio.sleep(0.25)
        assert manager.received() == []
        assert dog.skipped >= 1
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_watchdog_needs_a_positive_interval() -> None:
    async def yes() -> bool:
        return True

    with pytest.raises(ValueError):
        Watchdog(SystemdNotify(None), timedelta(0), yes)
