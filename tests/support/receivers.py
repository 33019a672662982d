"""Real alert receivers on 127.0.0.1 for tests: a webhook endpoint and an SMTP server.

`HookReceiver` is an aiohttp.web server that records every POST (apprise's `json://` sends one
JSON object per alert) and answers with the statuses a test scripts: `answers=[500, 500]` makes
the first two posts fail and the rest succeed; an answer may carry headers too, as
`(429, {"Retry-After": "120"})`. `MailReceiver` is a real SMTP server (aiosmtpd,
in its own thread, as a mail relay would be) that keeps every message it accepted.

Both serve newsmon running in this process or in a subprocess alike.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True, slots=True)
class Post:
    path: str
    status: int  # what the receiver answered
    body: Any  # the decoded JSON (or the raw text when it was not JSON)
    headers: dict[str, str]


Answer = int | tuple[int, Mapping[str, str]]  # a status, or a status and its headers


class HookReceiver:
    """An HTTP endpoint that records posts; `accepted` are those answered 2xx."""

    def __init__(self, answers: Iterable[Answer] = ()) -> None:
        self.posts: list[Post] = []
        self._answers = list(answers)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str = "/hook", scheme: str = "json") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def answer_next(self, *statuses: Answer) -> None:
        """Answer the next posts with these statuses, in order, then 200 again."""
        self._answers.extend(statuses)

    @property
    def accepted(self) -> list[Post]:
        return [p for p in self.posts if 200 <= p.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.text()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        answer = self._answers.pop(0) if self._answers else 200
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        self.posts.append(Post(request.path, status, body, dict(request.headers)))
        return web.json_response({"ok": status < 300}, status=status, headers=dict(headers))

    async def __aenter__(self) -> HookReceiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Post]:
        """Wait until `count` posts were accepted; returns them (fewer on timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.accepted) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.accepted


class _Keep:
    def __init__(self, box: list[EmailMessage]) -> None:
        self.box = box

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.box.append(message)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MailReceiver:
    """A real SMTP server on 127.0.0.1 (no TLS, no auth) keeping every accepted message."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = free_port()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(_Keep(self.messages), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> MailReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.messages
