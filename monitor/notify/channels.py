"""Alert channels: apprise URLs plus the built-in ``console://``, and secret masking.

Contract:

- Each URL of a channel gets the alert rendered in its own format (``render.render_for``)
  and is sent on its own; see ``Notifier`` for what is particular to a service.
- A failure is permanent (``SendOutcome.permanent``: the outbox dead-letters it after one
  attempt) when a URL cannot be built, the template is missing or broken, a service
  answered 401, 403 or 404, or Telegram refused even the plain text (400). Everything else
  (429, 5xx, timeouts, refused connections) is temporary, with the service's requested
  wait in ``retry_after`` when it gave one: a Retry-After header of an HTTP service
  (``answers.py``), or a wait a service wrote in its error.

- ``Notifier.send`` and ``Notifier.send_text`` never raise for a channel's failure; the
  outcome is a ``SendOutcome`` whose ``error`` is masked and safe to log or store.
- A channel holding several URLs succeeds only when every URL accepted the alert. A partial
  failure is reported as a failure, so the outbox retries the whole alert and the URLs that
  had accepted it get it again: delivery is at-least-once per URL, never at-most-once
  (DESIGN.md, "Nothing lost" outranks a rare duplicate on a multi-URL channel).
- ``console://`` is written only after every other URL of its channel accepted, so a
  retried alert does not print once per failed attempt.
- Sends run in apprise's worker threads (``Apprise.async_notify``), never on the event loop.
- No URL is ever shown unmasked: ``mask_url`` for URLs, ``scrub`` for reasons that came
  from apprise and might quote a token.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TextIO

import apprise
from apprise.plugins import url_to_dict
from apprise.plugins.email import NotifyEmail
from apprise.plugins.telegram import NotifyTelegram

from monitor.model import Channel, Delivery

from .answers import listening
from .formats import TEXT
from .masking import CONSOLE_URL, is_console, scrub
from .render import (
    Rendered,
    TemplateProblem,
    clean_line,
    escape_title,
    load_template,
    render_for,
    resolve_format,
    validate_template,
)
from .services import (
    APPRISE_FORMAT,
    MAX_REASON,
    SendOutcome,
    asset,
    combine,
    digest_message_id,
    instantiate,
    mail_service,
    mask_url,
    message_id,
    outcome,
    validate_channel_url,
)
from .telegram import plain_telegram

__all__ = [
    "CONSOLE_URL",
    "Notifier",
    "SendOutcome",
    "digest_message_id",
    "mask_url",
    "message_id",
    "validate_channel",
    "validate_channel_url",
]

log = logging.getLogger(__name__)


# --- the notifier ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """One URL of a channel, built once: its service and how to write for it."""

    url: str  # as configured; only ever used to scrub secrets out of reasons
    service: Any  # apprise.Apprise holding this one service
    body_format: str  # "text" | "markdown" | "html"
    blends_title: bool  # the service puts the title into the body: escape it for the format
    plain: Any | None  # Telegram: the same chats as plain text, the resend after a 400
    mail: Mapping[str, Any] | None  # apprise's parsed SMTP URL: each alert gets its Message-ID


@dataclass(frozen=True, slots=True)
class _Route:
    """One channel, built once: its targets, templates and whether it prints to the console."""

    channel: Channel
    targets: tuple[_Target, ...]
    console: bool
    templates: Mapping[str, Any]  # body format -> compiled jinja2 template
    broken: str | None  # masked reason when the channel cannot work (URL or template)

    @property
    def urls(self) -> tuple[str, ...]:
        return self.channel.urls


def _scheme(plugin: Any) -> str:
    try:
        return str(plugin.url(privacy=True)).partition("://")[0].lower()
    except Exception:  # third-party code; an unknown scheme means plain text
        return ""


def _target(url: str, plugin: Any, channel: Channel) -> _Target:
    services = apprise.Apprise(asset=asset())
    services.add(plugin)
    mail = None
    if type(plugin) is NotifyEmail:
        # The exact class only: providers built on it may send through an API, not SMTP.
        parsed = url_to_dict(url, secure_logging=True)  # type: ignore[no-untyped-call]
        mail = MappingProxyType(dict(parsed or {}))
    return _Target(
        url=url,
        service=services,
        body_format=resolve_format(channel.format, _scheme(plugin)),
        blends_title=int(getattr(plugin, "title_maxlen", 1)) <= 0,
        plain=plain_telegram(url) if isinstance(plugin, NotifyTelegram) else None,
        mail=mail or None,
    )


def _build_route(channel: Channel) -> _Route:
    targets: list[_Target] = []
    problems: list[str] = []
    console = False
    for url in channel.urls:
        if is_console(url):
            reason = validate_channel_url(url)
            if reason is None:
                console = True
            else:
                problems.append(f"{mask_url(url)}: {reason}")
            continue
        plugin, reason = instantiate(url)
        if plugin is None:
            problems.append(f"{mask_url(url)}: {reason}")
        else:
            targets.append(_target(url, plugin, channel))
    if not channel.urls:
        problems.append("the channel has no URL")
    # Text is always needed: the console, and Telegram's fallback.
    formats = tuple(dict.fromkeys([TEXT, *(t.body_format for t in targets)]))
    templates: dict[str, Any] = {}
    problem = validate_template(channel, formats)
    if problem is None:
        try:
            templates = {fmt: load_template(channel.template, fmt) for fmt in formats}
        except TemplateProblem as exc:  # the file changed since the line above read it
            problem = str(exc)
    if problem is not None:
        problems.append(problem)
    broken = scrub("; ".join(problems), channel.urls) if problems else None
    return _Route(channel, tuple(targets), console, MappingProxyType(templates), broken)


def validate_channel(channel: Channel) -> str | None:
    """None when ``channel`` can send, else the (masked) reason, for `newsmon check`.

    Checks every URL (as ``validate_channel_url``), the format, the time zone and the
    template, which is compiled and rendered with a sample alert in every format the
    channel's URLs use. Nothing is sent and no connection is made.
    """
    return _build_route(channel).broken


class Notifier:
    """Sends alerts through the configured channels.

    Built once per configuration (a reload builds a new one). ``send`` and ``send_text`` may
    be awaited concurrently, for the same channel too. A channel whose URLs apprise cannot
    build, or whose template is missing or broken, is logged once here and answers every
    send with a permanent failure; an unknown channel name answers with a temporary one
    (the configuration may bring it back).

    Each URL of a channel gets the alert in its own format (``render_for``): the channel's
    ``format``, or for "auto" the one its service renders. Service-specific behaviour:

    - a service that puts the title into the body (Telegram, Mattermost) gets it escaped
      for the body's format; the others get it plain and escape it themselves;
    - Telegram: a message that Telegram refuses (HTTP 400, "can't parse entities") is sent
      once more as plain text, without ``parse_mode``; a 400 on that too is permanent;
    - SMTP email: the Message-ID is ``message_id(delivery)``, the same on every resend
      (``send_text``: the ``message_id`` it is given);
    - 401, 403 and 404 answers are permanent failures; others are temporary, with the
      service's requested wait in ``retry_after`` when it said one (a Retry-After header
      on a 429 or 503, at most ``answers.MAX_RETRY_AFTER``).
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        *,
        stdout: TextIO | None = None,
        timeout: float = 30.0,
    ) -> None:
        """``stdout``: where console:// writes (default: ``sys.stdout`` at the time of the
        send). ``timeout``: seconds one send may take over all its URLs; apprise reports
        a service still running then as timed out (the outbox retries it)."""
        self._stdout = stdout
        self._timeout = timeout
        self._routes = {name: _build_route(channel) for name, channel in channels.items()}
        for route in self._routes.values():
            if route.broken:
                log.error("channel %r cannot send: %s", route.channel.name, route.broken)

    @property
    def timeout(self) -> float:
        """Seconds one send may last at most (the outbox keeps its leases longer than this)."""
        return self._timeout

    @property
    def channels(self) -> frozenset[str]:
        """The names of the configured channels."""
        return frozenset(self._routes)

    async def send(self, delivery: Delivery) -> SendOutcome:
        """Render ``delivery`` for each URL of its channel and send it there.

        ``ok`` only when every URL accepted it. A template that fails on this delivery is
        a permanent failure (fix the template, then `newsmon alerts retry`).
        """
        route = self._routes.get(delivery.channel)
        if route is None:
            return SendOutcome(False, f"channel {delivery.channel!r} is not in the configuration")
        if route.broken is not None:
            return SendOutcome(False, route.broken, permanent=True)
        try:
            rendered = {
                fmt: render_for(route.channel, delivery, fmt, template=template)
                for fmt, template in route.templates.items()
            }
        except TemplateProblem as exc:
            return SendOutcome(False, scrub(str(exc), route.urls)[:MAX_REASON], permanent=True)
        text = rendered[TEXT]
        if route.targets:
            mail_id = message_id(delivery)
            sends = [
                self._send_to(t, rendered[t.body_format], text, mail_id) for t in route.targets
            ]
            outcome = combine(list(await asyncio.gather(*sends)))
            if not outcome.ok:
                return outcome
        return self._console(route, text.title, text.body)

    async def send_text(
        self, channel: str, title: str, body: str, *, message_id: str | None = None
    ) -> SendOutcome:
        """Send a plain-text message through ``channel`` (digests, announcements).

        ``ok`` only when every URL of the channel accepted it. The title is made one line
        here whatever the caller passed, so no service can take part of it for a header.
        ``message_id``: the Message-ID of its email, the same for every resend of this
        message (``digest_message_id``); None: apprise makes a new one each time.
        """
        route = self._routes.get(channel)
        if route is None:
            return SendOutcome(False, f"channel {channel!r} is not in the configuration")
        if route.broken is not None:
            return SendOutcome(False, route.broken, permanent=True)
        message = Rendered(title=clean_line(title), body=body, body_format=TEXT)
        if route.targets:
            sends = [self._send_to(t, message, message, message_id) for t in route.targets]
            outcome = combine(list(await asyncio.gather(*sends)))
            if not outcome.ok:
                return outcome
        return self._console(route, message.title, body)

    def _console(self, route: _Route, title: str, body: str) -> SendOutcome:
        # Written only after every remote URL accepted, so a retry does not reprint.
        if not route.console:
            return SendOutcome(True)
        stream = self._stdout if self._stdout is not None else sys.stdout
        try:
            stream.write(f"=== {title}\n{body}\n\n")
            stream.flush()
        except (OSError, ValueError) as exc:  # closed or broken stdout
            return SendOutcome(False, f"console: {type(exc).__name__}: {exc}")
        return SendOutcome(True)

    async def _send_to(
        self, target: _Target, message: Rendered, text: Rendered, mail_id: str | None
    ) -> SendOutcome:
        """Send ``message`` to one URL; ``text``: the same in plain text, Telegram's resend;
        ``mail_id``: the Message-ID of an email (None: apprise's own)."""
        service = target.service
        if target.mail is not None and mail_id is not None:
            service = mail_service(target.mail, mail_id)
        outcome, statuses = await self._notify(target, service, message)
        if outcome.ok or target.plain is None or 400 not in statuses:
            return outcome
        # Telegram refused the message (a tag or entity it cannot parse): the words matter
        # more than the bold, so the alert goes once more as plain text, parsed as nothing.
        fallback, refused = await self._notify(target, target.plain, text)
        if fallback.ok:
            log.warning(
                "Telegram refused the formatted alert, sent as plain text: %s", outcome.error
            )
            return fallback
        return SendOutcome(
            False,
            f"{outcome.error}; as plain text: {fallback.error}"[:MAX_REASON],
            # Plain text has no markup to refuse: a 400 now is about the message or the
            # chat, and sending it again cannot help.
            permanent=fallback.permanent or 400 in refused,
            retry_after=fallback.retry_after,
        )

    async def _notify(
        self, target: _Target, service: Any, message: Rendered
    ) -> tuple[SendOutcome, set[int]]:
        title = message.title
        if target.blends_title and message.body_format != TEXT:
            # apprise converts a text title itself; a formatted one it takes as markup.
            title = escape_title(message.body_format, title)
        # The HTTP answers of this send alone: their Retry-After headers are the wait a
        # rate-limited service asked for, which apprise reports only as "error=429".
        with listening() as answers:
            try:
                result = await service.async_notify(
                    body=message.body,
                    title=title,
                    body_format=APPRISE_FORMAT[message.body_format],
                    timeout=self._timeout,
                )
            except Exception as exc:  # apprise promises a result; a surprise is one failure
                reason = f"apprise failed: {type(exc).__name__}: {exc}"
                return SendOutcome(False, scrub(reason, (target.url,))[:MAX_REASON]), set()
        try:
            return outcome(result, (target.url,), list(answers))
        finally:
            result.close()
