"""notify: what Slack, Telegram and email actually receive, at the wire, on 127.0.0.1.

apprise's Slack and Telegram services are pointed at a local aiohttp server (their endpoint
class attributes, restored by monkeypatch after each test); the JSON they post is compared
exactly. Email goes to a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp import web
from apprise.plugins.discord import NotifyDiscord
from apprise.plugins.slack import NotifySlack
from apprise.plugins.telegram import NotifyTelegram

from monitor.model import Channel, Copy, Match
from monitor.notify import Notifier, message_id
from monitor.notify.answers import MAX_RETRY_AFTER
from tests.support.receivers import HookReceiver, MailReceiver
from tests.test_notify import delivery

SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/"
SLACK_PATH = "/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"
TGRAM = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12315544/"
TGRAM_PATH = "/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage"
DISCORD = "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js/"
HOSTILE = "<!channel> <script>alert(1)</script> & @here *now*"
SNIPPET = "Moscow <b>ratified</b> the treaty & more"


@dataclass
class Service:
    """A fake Slack webhook + Telegram Bot API + Discord webhook: records every request,
    scripted answers (status, JSON body[, headers])."""

    port: int = 0
    requests: list[tuple[str, Any]] = field(default_factory=list)
    answers: list[tuple[Any, ...]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, json.loads(await request.text())))
        status, body, *more = self.answers.pop(0) if self.answers else (200, {"ok": True})
        headers = more[0] if more else {}
        if request.path.startswith("/services/") and status == 200:
            return web.Response(text="ok")  # Slack's webhook answers a bare "ok"
        return web.json_response(body, status=status, headers=headers)


@pytest.fixture
async def service(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Service]:
    recorder = Service()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    recorder.port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{recorder.port}"
    monkeypatch.setattr(NotifySlack, "webhook_url", f"{base}/services")
    monkeypatch.setattr(NotifyTelegram, "notify_url", f"{base}/bot")
    monkeypatch.setattr(NotifyDiscord, "notify_url", f"{base}/discord")
    try:
        yield recorder
    finally:
        await runner.cleanup()


def hostile_delivery(**kwargs: Any) -> Any:
    match = Match(rule="treaty", snippet=SNIPPET, highlights=((7, 22),))
    also = (Copy("tass", "https://tass.example/1", datetime(2026, 11, 23, 7, 30, tzinfo=UTC)),)
    return delivery(title=HOSTILE, match=match, also=also, **kwargs)


# --- Slack --------------------------------------------------------------------------------


async def test_slack_gets_markdown_with_mentions_and_tags_escaped(service: Service) -> None:
    notifier = Notifier({"desk": Channel("desk", (SLACK,), timezone="Asia/Tehran")})
    outcome = await notifier.send(hostile_delivery())
    assert outcome.ok, outcome.error
    [(path, payload)] = service.requests
    assert path == SLACK_PATH
    ts = payload["attachments"][0].pop("ts")  # when apprise sent it: the one volatile field
    assert isinstance(ts, float) and ts > 0
    icon = "https://github.com/caronc/apprise/raw/master/apprise/assets/themes/default/"
    assert payload == {
        "mrkdwn": True,
        "attachments": [
            {
                # Slack's control characters are entities: no <!channel>, no <script>.
                "title": (
                    "&lt;!channel&gt; &lt;script&gt;alert(1)&lt;/script&gt; &amp; @here *now*"
                ),
                "text": (
                    "<https://english.aawsat.com/news/123>\n"
                    "\n"
                    "Source: *aawsat-world* · 2026-11-23 10:40 +0330 · rule *iran-russia-treaty*\n"
                    "\n"
                    "> Moscow *&lt;b&gt;ratified&lt;/b&gt;* the treaty &amp; more\n"
                    "\n"
                    "Also reported by: tass (11:00 +0330)"
                ),
                "color": "#3AA3E3",
                "footer_icon": icon + "apprise-info-72x72.png",
                "footer": "Apprise",
            }
        ],
        "icon_url": icon + "apprise-info-72x72.png",
    }


async def test_slack_feed_text_cannot_mention_or_link(service: Service) -> None:
    match = Match(rule="r", snippet="<!here> <@U024BE7LH> @channel [x](https://evil.example)")
    notifier = Notifier({"desk": Channel("desk", (SLACK,))})
    assert (await notifier.send(delivery(match=match))).ok
    [(_, payload)] = service.requests
    text = payload["attachments"][0]["text"]
    assert "&lt;!here&gt; &lt;@\u200bU024BE7LH&gt; @\u200bchannel" in text
    assert "<!" not in text and "<@" not in text and "https://evil.example|" not in text


# --- Telegram -----------------------------------------------------------------------------


async def test_telegram_gets_its_html_subset_with_feed_text_escaped(service: Service) -> None:
    notifier = Notifier({"tg": Channel("tg", (TGRAM,))})
    outcome = await notifier.send(hostile_delivery(channel="tg"))
    assert outcome.ok, outcome.error
    [(path, payload)] = service.requests
    assert path == TGRAM_PATH
    assert payload == {
        "chat_id": 12315544,
        "disable_notification": False,
        "disable_web_page_preview": True,
        "parse_mode": "HTML",
        "text": (
            "<b>&lt;!channel&gt; &lt;script&gt;alert(1)&lt;/script&gt; &amp; @here *now*</b>\r\n"
            '<a href="https://english.aawsat.com/news/123">https://english.aawsat.com/news/123</a>'
            "\r\nSource: <b>aawsat-world</b>\r\n"
            "Published: 2026-11-23 07:10 UTC\r\n"
            "Rule: <b>iran-russia-treaty</b>\r\n"
            "<i>Moscow <b>&lt;b&gt;ratified&lt;/b&gt;</b> the treaty &amp; more</i>\r\n"
            'Also reported by: <a href="https://tass.example/1">tass</a> (07:30 UTC)'
        ),
    }


async def test_telegram_refusal_is_resent_once_as_plain_text(service: Service) -> None:
    service.answers.append(
        (400, {"ok": False, "description": "Bad Request: can't parse entities: bad tag"})
    )
    notifier = Notifier({"tg": Channel("tg", (TGRAM,))})
    outcome = await notifier.send(hostile_delivery(channel="tg"))
    assert outcome.ok, outcome.error
    [(_, first), (path, second)] = service.requests
    assert first["parse_mode"] == "HTML" and "<i>" in first["text"]
    # The fallback is the text template with no parse_mode: Telegram parses nothing in it,
    # so the feed's text arrives as it was written, markup characters and all.
    assert path == TGRAM_PATH
    assert second == {
        "chat_id": 12315544,
        "disable_notification": False,
        "disable_web_page_preview": True,
        "text": (
            "<!channel> <script>alert(1)</script> & @here *now*\r\n"
            "https://english.aawsat.com/news/123\n"
            "\n"
            "Source: aawsat-world\n"
            "Published: 2026-11-23 07:10 UTC\n"
            "Rule: iran-russia-treaty\n"
            "Passage: Moscow «<b>ratified</b>» the treaty & more\n"
            "\n"
            "Also reported by: tass (07:30 UTC)"
        ),
    }


async def test_telegram_refusing_the_plain_text_too_is_a_dead_letter(
    service: Service,
) -> None:
    # Plain text has no entities to parse: a 400 on it (a chat that cannot take it, a bad
    # request) is not cured by sending it again, twenty times over.
    refusal = (400, {"ok": False, "description": "Bad Request: chat not found"})
    service.answers += [refusal, refusal]
    notifier = Notifier({"tg": Channel("tg", (TGRAM,))})
    outcome = await notifier.send(delivery(channel="tg"))
    assert not outcome.ok and outcome.permanent
    assert outcome.error is not None and "as plain text" in outcome.error
    assert "AAHdqTcv" not in outcome.error
    assert len(service.requests) == 2  # resent once, not in a loop
    assert "parse_mode" not in service.requests[1][1]


async def test_telegram_plain_text_resend_failing_for_now_is_temporary(
    service: Service,
) -> None:
    service.answers += [
        (400, {"ok": False, "description": "Bad Request: can't parse entities"}),
        (503, {"ok": False, "description": "Service Unavailable"}),
    ]
    notifier = Notifier({"tg": Channel("tg", (TGRAM,))})
    outcome = await notifier.send(delivery(channel="tg"))
    assert not outcome.ok and not outcome.permanent
    assert len(service.requests) == 2


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_telegram_refused_credentials_or_chat_are_permanent(
    service: Service, status: int
) -> None:
    service.answers.append((status, {"ok": False, "description": "Unauthorized"}))
    notifier = Notifier({"tg": Channel("tg", (TGRAM,))})
    outcome = await notifier.send(delivery(channel="tg"))
    assert not outcome.ok and outcome.permanent
    assert outcome.error is not None and f"error={status}" in outcome.error
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in outcome.error
    assert len(service.requests) == 1  # no plain-text resend for anything but 400


async def test_telegram_429_is_temporary_with_its_retry_after(service: Service) -> None:
    service.answers.append((429, {"ok": False, "description": "Too Many Requests: retry after 17"}))
    notifier = Notifier({"tg": Channel("tg", (TGRAM,))})
    outcome = await notifier.send(delivery(channel="tg"))
    assert not outcome.ok and not outcome.permanent
    assert outcome.retry_after == 17.0


async def test_telegram_500_is_temporary(service: Service) -> None:
    service.answers.append((500, {"ok": False, "description": "Internal Server Error"}))
    outcome = await Notifier({"tg": Channel("tg", (TGRAM,))}).send(delivery(channel="tg"))
    assert not outcome.ok and not outcome.permanent and outcome.retry_after is None


async def test_one_channel_two_services_each_in_its_format(service: Service) -> None:
    notifier = Notifier({"desk": Channel("desk", (SLACK, TGRAM))})
    assert (await notifier.send(hostile_delivery())).ok
    by_path = dict(service.requests)
    assert "*&lt;b&gt;ratified&lt;/b&gt;*" in by_path[SLACK_PATH]["attachments"][0]["text"]
    assert "<b>&lt;b&gt;ratified&lt;/b&gt;</b>" in by_path[TGRAM_PATH]["text"]


async def test_a_permanent_failure_on_one_url_makes_the_channel_permanent(
    service: Service,
) -> None:
    async with HookReceiver(answers=[503]) as hook:
        service.answers.append((403, {"ok": False, "description": "Forbidden: bot was blocked"}))
        notifier = Notifier({"desk": Channel("desk", (hook.url(), TGRAM))})
        outcome = await notifier.send(delivery())
        assert not outcome.ok and outcome.permanent
        assert outcome.error is not None and "503" in outcome.error and "403" in outcome.error


# --- Retry-After ---------------------------------------------------------------------------

RECEIVER_DATE = "Mon, 23 Nov 2026 07:15:00 GMT"


@pytest.mark.parametrize("url", [SLACK, DISCORD, TGRAM], ids=["slack", "discord", "telegram"])
@pytest.mark.parametrize(
    ("status", "header", "wait"),
    [
        (429, "120", 120.0),
        (503, "Mon, 23 Nov 2026 07:17:30 GMT", 150.0),  # from the receiver's Date
        (429, "99999999", MAX_RETRY_AFTER),  # a day at most: beyond, it would park the alert
        (500, "120", None),  # on a 500 it asks for nothing
        (429, "soon", None),
    ],
)
async def test_http_services_retry_after_header_is_the_wait(
    service: Service, url: str, status: int, header: str, wait: float | None
) -> None:
    answer = (status, {"ok": False}, {"Retry-After": header, "Date": RECEIVER_DATE})
    service.answers += [answer, answer]  # Discord tries a 429 once more by itself
    outcome = await Notifier({"desk": Channel("desk", (url,))}).send(delivery(channel="desk"))
    assert not outcome.ok and not outcome.permanent
    assert outcome.retry_after == wait


async def test_retry_after_is_read_from_this_send_alone(service: Service) -> None:
    # Two channels at once on one event loop: the 429's wait goes to its own send only.
    service.answers.append((429, {"ok": False}, {"Retry-After": "120"}))
    async with HookReceiver(answers=[500]) as hook:
        notifier = Notifier(
            {"slack": Channel("slack", (SLACK,)), "hook": Channel("hook", (hook.url(),))}
        )
        limited, other = await asyncio.gather(
            notifier.send(delivery(channel="slack")), notifier.send(delivery(channel="hook"))
        )
    assert not limited.ok and limited.retry_after == 120.0
    assert not other.ok and other.retry_after is None


# --- webhooks -----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "permanent"), [(401, True), (404, True), (429, False)])
async def test_json_webhook_status_decides_permanence(status: int, permanent: bool) -> None:
    async with HookReceiver(answers=[status]) as hook:
        outcome = await Notifier({"desk": Channel("desk", (hook.url(),))}).send(delivery())
        assert not outcome.ok and outcome.permanent is permanent
        assert len(hook.posts) == 1


# --- email --------------------------------------------------------------------------------


@pytest.fixture
def mail() -> Iterator[MailReceiver]:
    with MailReceiver() as receiver:
        yield receiver


def _mail_url(mail: MailReceiver) -> str:
    return f"mailto://127.0.0.1:{mail.port}?to=desk@example.org&from=newsmon@example.org"


async def test_email_resend_carries_the_same_message_id(mail: MailReceiver) -> None:
    notifier = Notifier({"mail": Channel("mail", (_mail_url(mail),))})
    first, other = delivery(channel="mail", id=7), delivery(channel="mail", id=8)
    for alert in (first, first, other):
        assert (await notifier.send(alert)).ok
    messages = await mail.wait_for(3)
    ids = [m.get_all("Message-ID") for m in messages]
    assert ids[0] == ids[1] == [message_id(first)]  # one header, ours, twice the same
    assert ids[2] == [message_id(other)] and ids[2] != ids[0]
    assert message_id(first).startswith("<alert-7.") and message_id(first).endswith(">")


async def test_email_is_html_with_a_text_alternative_and_a_plain_subject(
    mail: MailReceiver,
) -> None:
    notifier = Notifier({"mail": Channel("mail", (_mail_url(mail),))})
    evil = hostile_delivery(channel="mail")
    assert (await notifier.send(evil)).ok
    [message] = await mail.wait_for(1)
    assert isinstance(message, EmailMessage)
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == HOSTILE  # a header is plain text: nothing to escape
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    assert html_part is not None and text_part is not None
    html = str(html_part.get_content())
    assert "<b>&lt;b&gt;ratified&lt;/b&gt;</b>" in html and "<script" not in html
    text = str(text_part.get_content())
    assert "https://english.aawsat.com/news/123" in text and "<b>ratified</b>" in text


async def test_email_title_with_crlf_cannot_add_a_header(mail: MailReceiver) -> None:
    notifier = Notifier({"mail": Channel("mail", (_mail_url(mail),))})
    assert (await notifier.send(delivery(channel="mail", title="Hi\r\nBcc: x@evil.example"))).ok
    [message] = await mail.wait_for(1)
    assert message["Bcc"] is None and message["Subject"] == "Hi Bcc: x@evil.example"
    assert len(message.get_all("Message-ID") or []) == 1
