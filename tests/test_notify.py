"""notify: channels against real receivers on 127.0.0.1, the alert text, URL masking.

The webhook receiver runs on the test's own event loop, so every json:// test also proves
that a send does not block the loop: a blocking send would never get its answer.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from monitor.model import Channel, Copy, Delivery, Item, Match
from monitor.notify import Notifier, mask_url, render, validate_channel_url
from tests.support.receivers import HookReceiver, MailReceiver, free_port

PUBLISHED = datetime(2026, 11, 23, 7, 10, tzinfo=UTC)
SNIPPET = "Tehran and Moscow said the treaty would be ratified next week."


def delivery(
    *,
    channel: str = "desk",
    title: str = "Iran and Russia ratify treaty",
    published: datetime | None = PUBLISHED,
    also: tuple[Copy, ...] = (),
    match: Match | None = None,
    id: int = 1,
) -> Delivery:
    item = Item(
        feed="aawsat-world",
        guid="g-1",
        url="https://english.aawsat.com/news/123",
        title=title,
        summary=SNIPPET,
        published=published,
    )
    if match is None:
        # "Tehran" (0-6), "treaty" (27-33), "ratified" (43-51)
        match = Match(rule="treaty", snippet=SNIPPET, highlights=((0, 6), (27, 33), (43, 51)))
    return Delivery(
        id=id,
        alert_id=id,
        channel=channel,
        rule="iran-russia-treaty",
        priority="normal",
        item=item,
        match=match,
        story="s-1",
        attempts=0,
        created=PUBLISHED,
        also=also,
    )


# --- render ------------------------------------------------------------------------------


def test_render_carries_title_link_source_time_rule_and_marked_passage() -> None:
    title, body = render(delivery())
    assert title == "Iran and Russia ratify treaty"
    assert body.splitlines()[0] == "https://english.aawsat.com/news/123"
    assert "Source: aawsat-world" in body
    assert "Published: 2026-11-23 07:10 UTC" in body
    assert "Rule: iran-russia-treaty" in body
    assert "«Tehran» and Moscow said the «treaty» would be «ratified» next week." in body
    assert "Also reported by" not in body


def test_render_undated_item() -> None:
    _, body = render(delivery(published=None))
    assert "Published: undated" in body


def test_render_also_reported_by_same_day_time_other_day_date_undated() -> None:
    also = (
        Copy("reuters", "https://r.example/1", datetime(2026, 11, 23, 7, 12, tzinfo=UTC)),
        Copy("ap", None, datetime(2026, 11, 24, 1, 5, tzinfo=UTC)),
        Copy("irna", None, None),
    )
    _, body = render(delivery(also=also))
    assert (
        "Also reported by: reuters (07:12 UTC), ap (2026-11-24 01:05 UTC), irna (undated)"
        in body.splitlines()
    )


def test_render_caps_a_long_also_list() -> None:
    also = tuple(Copy(f"feed{i}", None, PUBLISHED) for i in range(13))
    _, body = render(delivery(also=also))
    assert "feed9 (07:10 UTC), and 3 more" in body
    assert "feed10" not in body


def test_render_highlights_clipped_and_merged() -> None:
    match = Match(rule="r", snippet="abc def ghi", highlights=((4, 6), (5, 7), (9, 99), (3, 3)))
    _, body = render(delivery(match=match))
    assert "Passage: abc «def» g«hi»" in body


def test_render_title_cannot_inject_lines() -> None:
    title, body = render(delivery(title="Breaking\r\nBcc: x@evil.example\n\x00 news"))
    assert title == "Breaking Bcc: x@evil.example news"
    assert "\r" not in body


# --- masking and validation ----------------------------------------------------------------

SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general"
TGRAM = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12315544/"


@pytest.mark.parametrize(
    ("url", "secrets", "kept"),
    [
        (SLACK, ["TIiajkdnlazkcOXrIdevi7FQ", "A1BRTD4JD"], "slack://"),
        (TGRAM, ["AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"], "tgram://"),
        ("mailto://user:hunter2pw@mail.example.org?to=a@example.org", ["hunter2pw"], "user:****@"),
        ("json://127.0.0.1:8080/hook?token=s3cr3tvalue", ["s3cr3tvalue"], "127.0.0.1:8080/hook"),
        (
            "json://127.0.0.1/hook?+Authorization=Bearer%20abcdef123&-apikey=k3y99999",
            ["abcdef123", "k3y99999"],
            "+Authorization=****",
        ),
        # apprise does not know these: the generic masker alone
        (
            "bogus://user:hunter2pw@example.org/x?api_key=zzzzzz",
            ["hunter2pw", "zzzzzz"],
            "bogus://",
        ),
        (
            "https://hooks.example.com/services/AAAABBBBCCCC1234abcd/x",
            ["AAAABBBBCCCC1234abcd"],
            "hooks.example.com",
        ),
        ("bogus://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/chat", ["AAHdqTcv"], "bogus://"),
    ],
)
def test_mask_url_hides_secrets(url: str, secrets: list[str], kept: str) -> None:
    masked = mask_url(url)
    for secret in secrets:
        assert secret not in masked
    assert kept in masked


def test_mask_url_console_and_garbage() -> None:
    assert mask_url("console://") == "console://"
    assert mask_url("not a url") == "<not a URL>"


@pytest.mark.parametrize(
    "url",
    [
        "console://",
        SLACK,
        TGRAM,
        "mailto://127.0.0.1:2525?to=a@example.org&from=newsmon@example.org",
        "json://127.0.0.1:8080/hook",
    ],
)
def test_validate_accepts(url: str) -> None:
    assert validate_channel_url(url) is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("nosuch://user:hunter2pw@host/x", "unknown scheme nosuch://"),
        ("not a url", "not a URL"),
        ("console://loud", "console:// takes no options"),
        ("slack://only-one-part-hunter2pw", "Slack"),
    ],
)
def test_validate_rejects_with_masked_reason(
    url: str, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        reason = validate_channel_url(url)
    assert reason is not None and says in reason
    assert "hunter2pw" not in reason
    # The reason is returned, not logged by apprise as well (once per check or mask).
    assert not [r for r in caplog.records if r.name == "apprise" and r.levelno >= logging.WARNING]


# --- json:// against a real webhook receiver -------------------------------------------------


async def test_json_post_carries_the_alert() -> None:
    async with HookReceiver() as hook:
        notifier = Notifier({"desk": Channel("desk", (hook.url(),))})
        outcome = await notifier.send(delivery())
        assert outcome.ok and outcome.error is None
        [post] = hook.accepted
        assert post.body["title"] == "Iran and Russia ratify treaty"
        message = post.body["message"]
        for needle in (
            "https://english.aawsat.com/news/123",
            "aawsat-world",
            "iran-russia-treaty",
            "2026-11-23 07:10 UTC",
            "«treaty» would be «ratified»",
        ):
            assert needle in message


async def test_json_500_is_a_failure_that_says_why(caplog: pytest.LogCaptureFixture) -> None:
    async with HookReceiver(answers=[500]) as hook:
        url = hook.url("/hook?-apikey=hunter2pw").replace("://", "://bob:pa55word@")
        notifier = Notifier({"desk": Channel("desk", (url,))})
        with caplog.at_level(logging.DEBUG):
            outcome = await notifier.send(delivery())
        assert not outcome.ok and not outcome.permanent
        assert outcome.error is not None and "500" in outcome.error
        assert "JSON" in outcome.error
        assert len(hook.posts) == 1 and not hook.accepted
    # Ours and apprise's log lines, even at DEBUG. (urllib3's DEBUG lines print the request
    # line with its query string: the daemon's logging config keeps urllib3 above DEBUG.)
    logged = [r.getMessage() for r in caplog.records if not r.name.startswith("urllib3")]
    for text in [outcome.error, *logged]:
        assert "pa55word" not in text and "hunter2pw" not in text


async def test_json_403_is_a_permanent_failure_that_says_why() -> None:
    async with HookReceiver(answers=[403]) as hook:
        outcome = await Notifier({"desk": Channel("desk", (hook.url(),))}).send(delivery())
        assert not outcome.ok and outcome.permanent
        assert outcome.error is not None and "authentication refused" in outcome.error
        assert len(hook.posts) == 1


async def test_connection_refused_is_a_temporary_failure() -> None:
    notifier = Notifier({"desk": Channel("desk", (f"json://127.0.0.1:{free_port()}/hook",))})
    outcome = await notifier.send(delivery())
    assert not outcome.ok and not outcome.permanent
    assert outcome.error is not None and "onnection" in outcome.error


async def test_channel_with_several_urls_needs_every_one() -> None:
    stream = io.StringIO()
    async with HookReceiver() as good, HookReceiver(answers=[503]) as bad:
        notifier = Notifier(
            {"desk": Channel("desk", (good.url(), bad.url(), "console://"))}, stdout=stream
        )
        outcome = await notifier.send(delivery())
        assert not outcome.ok and outcome.error is not None and "503" in outcome.error
        # At-least-once: the URL that accepted got it and will get it again on the retry;
        # the console waits until every remote URL accepted, so a retry does not reprint.
        assert len(good.accepted) == 1
        assert stream.getvalue() == ""
        assert (await notifier.send(delivery())).ok
        assert len(good.accepted) == 2 and len(bad.accepted) == 1
        assert "Iran and Russia ratify treaty" in stream.getvalue()


# --- console:// and channel errors -----------------------------------------------------------


async def test_console_writes_the_alert_to_the_stream() -> None:
    stream = io.StringIO()
    notifier = Notifier({"console": Channel("console", ("console://",))}, stdout=stream)
    outcome = await notifier.send(delivery(channel="console"))
    assert outcome.ok
    text = stream.getvalue()
    assert text.startswith("=== Iran and Russia ratify treaty\nhttps://english.aawsat.com/news/123")
    assert "Rule: iran-russia-treaty" in text


async def test_send_text_flattens_the_title() -> None:
    stream = io.StringIO()
    notifier = Notifier({"c": Channel("c", ("console://",))}, stdout=stream)
    assert (await notifier.send_text("c", "test\r\nX-Evil: 1", "hello")).ok
    assert stream.getvalue() == "=== test X-Evil: 1\nhello\n\n"


async def test_unknown_channel_is_a_temporary_failure() -> None:
    notifier = Notifier({})
    outcome = await notifier.send(delivery(channel="gone"))
    assert not outcome.ok and not outcome.permanent
    assert outcome.error is not None and "'gone'" in outcome.error


async def test_broken_url_is_a_permanent_failure_with_a_masked_reason() -> None:
    notifier = Notifier({"desk": Channel("desk", ("nosuch://user:hunter2pw@host/x",))})
    outcome = await notifier.send(delivery())
    assert not outcome.ok and outcome.permanent
    assert outcome.error is not None and "unknown scheme" in outcome.error
    assert "hunter2pw" not in outcome.error


# --- mailto:// against a real SMTP server ---------------------------------------------------


@pytest.fixture
def mail() -> Iterator[MailReceiver]:
    with MailReceiver() as receiver:
        yield receiver


def _plain_body(message: object) -> str:
    from email.message import EmailMessage

    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


async def test_mailto_plain_smtp_delivers(mail: MailReceiver) -> None:
    url = f"mailto://127.0.0.1:{mail.port}?to=desk@example.org&from=newsmon@example.org"
    notifier = Notifier({"mail": Channel("mail", (url,))})
    outcome = await notifier.send(delivery(channel="mail"))
    assert outcome.ok, outcome.error
    [message] = await mail.wait_for(1)
    assert message["Subject"] == "Iran and Russia ratify treaty"
    assert message["To"].endswith("desk@example.org")
    assert "https://english.aawsat.com/news/123" in _plain_body(message)


async def test_mailto_title_cannot_add_a_header(mail: MailReceiver) -> None:
    url = f"mailto://127.0.0.1:{mail.port}?to=desk@example.org&from=newsmon@example.org"
    notifier = Notifier({"mail": Channel("mail", (url,))})
    evil = delivery(channel="mail", title="Breaking\r\nBcc: x@evil.example")
    assert (await notifier.send(evil)).ok
    [message] = await mail.wait_for(1)
    assert message["Bcc"] is None
    assert "Bcc" not in message.keys()
    assert message["Subject"] == "Breaking Bcc: x@evil.example"


class _AuthSink:
    """An SMTP handler that keeps envelopes; with the authenticator below it wants a login."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"bob", b"pa55word")
    # handled=False: aiosmtpd answers the refusal itself (535) instead of leaving it to us.
    return AuthResult(success=ok, handled=False)


async def test_mailto_with_login_and_envelope_recipients() -> None:
    sink = _AuthSink()
    port = free_port()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticator,
        auth_require_tls=False,
    )
    controller.start()
    try:
        url = f"mailto://bob:pa55word@127.0.0.1:{port}?to=desk@example.org&from=newsmon@example.org"
        notifier = Notifier({"mail": Channel("mail", (url,))})
        evil = delivery(channel="mail", title="x\r\nBcc: x@evil.example")
        assert (await notifier.send(evil)).ok
        [envelope] = sink.envelopes
        assert envelope.rcpt_tos == ["desk@example.org"]

        wrong = Notifier({"mail": Channel("mail", (url.replace("pa55word", "nope0000"),))})
        outcome = await wrong.send(delivery(channel="mail"))
        assert not outcome.ok and outcome.error is not None
        # SMTP's 535 is email's 401: permanent, so the outbox dead-letters it at once.
        assert outcome.permanent and "credentials" in outcome.error
        assert "nope0000" not in outcome.error
        assert len(sink.envelopes) == 1
    finally:
        controller.stop()


async def test_a_slow_service_times_out_as_a_temporary_failure() -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", stall)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        url = f"json://127.0.0.1:{runner.addresses[0][1]}/hook"
        notifier = Notifier({"desk": Channel("desk", (url,))}, timeout=0.3)
        started = asyncio.get_running_loop().time()
        outcome = await notifier.send(delivery())
        assert asyncio.get_running_loop().time() - started < 0.9
        assert not outcome.ok and not outcome.permanent
        assert outcome.error is not None and "time" in outcome.error.lower()
    finally:
        await runner.cleanup()
