"""Alert channels: apprise URLs plus the built-in ``console://``, and secret masking.

Contract:

- Each URL of a channel gets the alert rendered in its own format (``render.render_for``)
  and is sent on its own; see ``Notifier`` for what is particular to a service.
- A failure is permanent (``SendOutcome.permanent``: the outbox dead-letters it after one
  attempt) when a URL cannot be built, the template is missing or broken, or a service
  answered 401, 403 or 404. Everything else (429, 5xx, timeouts, refused connections)
  is temporary, with the service's requested wait in ``retry_after`` when it gave one.

- ``Notifier.send`` and ``Notifier.send_text`` never raise for a channel's failure; the
  outcome is a ``SendOutcome`` whose ``error`` is masked and safe to log or store.
- A channel holding several URLs succeeds only when every URL accepted the alert. A partial
  failure is reported as a failure, so the outbox retries the whole alert and the URLs that
  had accepted it get it again: delivery is at-least-once per URL, never at-most-once
  (DESIGN.md, "Nothing lost" outranks a rare duplicate on a multi-URL channel).
- ``console://`` is written only after every other URL of its channel accepted, so a
  retried alert does not print once per failed attempt.
- Sends run in apprise's worker threads (``Apprise.async_notify``), never on the event loop.
- No URL is ever shown unmasked: ``mask_url`` for URLs, ``_scrub`` for reasons that came
  from apprise and might quote a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import smtplib
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import apprise
from apprise.apprise import N_MGR
from apprise.exception import AppriseImproperlyConfigured
from apprise.plugins import url_to_dict
from apprise.plugins.email import AppriseEmailException, NotifyEmail
from apprise.plugins.email.smtp import AppriseSMTPController
from apprise.plugins.telegram import NotifyTelegram

from monitor.model import Channel, Delivery

from .formats import HTML, MARKDOWN, TEXT
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

__all__ = [
    "CONSOLE_URL",
    "Notifier",
    "SendOutcome",
    "mask_url",
    "message_id",
    "validate_channel",
    "validate_channel_url",
]

log = logging.getLogger(__name__)

CONSOLE_URL = "console://"

# Query keys whose values are credentials whatever the service (compared after stripping
# apprise's `+` header / `-` parameter / `:` payload prefixes, lower-cased).
_SECRET_KEY = re.compile(
    r"(token|secret|pass|pwd|key|auth|sig|session|cookie|credential|bearer|webhook)",
    re.IGNORECASE,
)
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# Pieces of a URL shorter than this are not scrubbed from messages: "hook" or "443" would
# blank ordinary words, and secrets that short are not secrets.
_MIN_SECRET_LEN = 6


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What one attempt to deliver an alert through one channel came to."""

    ok: bool
    error: str | None = None  # masked, human reason; None when ok
    permanent: bool = False  # retrying cannot help: bad URL or template, or 401/403/404
    retry_after: float | None = None  # seconds the service asked us to wait, when it said


# --- masking ---------------------------------------------------------------------------


def _is_console(url: str) -> bool:
    return url.strip().lower().startswith(CONSOLE_URL)


def _abbreviate(secret: str) -> str:
    """Keep the first and last character, as apprise does, so two tokens stay tellable."""
    return f"{secret[0]}...{secret[-1]}" if len(secret) >= 8 else "****"


def _looks_like_token(segment: str) -> bool:
    """A path segment that is probably a credential: long, and letters mixed with digits."""
    text = unquote(segment)
    if "@" in text:
        return False  # an email address (a mailto target), which the reader needs to see
    if ":" in text and len(text) >= 10:
        return True  # bot-token shape, e.g. Telegram's 123456:ABC...
    has_alpha = any(c.isalpha() for c in text)
    has_digit = any(c.isdigit() for c in text)
    return len(text) >= 16 and has_alpha and has_digit


def _mask_query(query: str) -> str:
    parts = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        bare = key.lstrip("+-:")
        # `+Name` is an HTTP header in apprise's json/xml/form plugins; headers carry
        # Authorization and API keys, and apprise's privacy URL prints them in clear.
        secret = key.startswith("+") or bool(_SECRET_KEY.search(bare)) or _looks_like_token(value)
        shown = "****" if secret and value else value
        parts.append(f"{quote(key, safe='+-:')}={quote(shown, safe='*@.')}")
    return "&".join(parts)


def _mask_generic(url: str) -> str:
    """Mask any URL without knowing its service: password, token-like segments, secret keys."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "<unparseable URL>"
    if not parts.scheme:
        return "<not a URL>"
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:****@{hostport}" if colon else f"{user}@{hostport}"
    else:
        host, colon, port = hostport.rpartition(":")
        if colon and not port.isdigit() and not hostport.startswith("["):
            # Not a port: a token living where the host goes (tgram://bot:token/chat).
            netloc = f"{host}:****"
    segments = [_abbreviate(s) if _looks_like_token(s) else s for s in parts.path.split("/")]
    masked = f"{parts.scheme}://{netloc}{'/'.join(segments)}"
    if parts.query:
        masked += "?" + _mask_query(parts.query)
    if parts.fragment:
        masked += "#" + parts.fragment
    return masked


def mask_url(url: str) -> str:
    """Return ``url`` with its secrets masked, for logs and CLI output.

    Where apprise knows the service, its ``url(privacy=True)`` decides which parts are
    secret; that text then goes through a generic pass too, because apprise prints HTTP
    header values (``+Authorization=...``) of its json/xml/form services in clear. URLs
    apprise does not know get the generic pass alone: passwords, token-like path segments,
    and values of query keys that name a credential. Never raises.
    """
    if _is_console(url):
        return CONSOLE_URL
    plugin, _ = _instantiate(url)
    if plugin is not None:
        try:
            return _drop_defaults(_mask_generic(str(plugin.url(privacy=True))))
        except Exception:  # a plugin's url() is third-party code; fall back below
            pass
    return _mask_generic(url)


# Options apprise appends to every URL it prints, at their default values: noise in a log line.
_APPRISE_DEFAULTS = frozenset({"overflow=upstream", "retry=0", "wait=0.5", "optional=no"})


def _drop_defaults(url: str) -> str:
    head, mark, query = url.partition("?")
    kept = [p for p in query.split("&") if p and p not in _APPRISE_DEFAULTS]
    return f"{head}?{'&'.join(kept)}" if mark and kept else head


def _secret_pieces(url: str) -> set[str]:
    """Every part of ``url`` that could be a credential, raw and percent-decoded."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return {url}
    pieces: set[str] = set()
    userinfo, _, hostport = parts.netloc.rpartition("@")
    pieces.update(userinfo.split(":"))
    host, _, port = hostport.partition(":")
    pieces.add(port)  # a token in the port's place (tgram://bot:token/...)
    if "." not in host and host.lower() != "localhost":
        pieces.add(host)  # no host name: a token in the host's place (slack://T/B/C)
    # Email addresses are kept: "recipient x@y refused" is the useful part of a reason.
    pieces.update(s for s in parts.path.split("/") if "@" not in unquote(s))
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        bare = key.lstrip("+-:")
        if key.startswith("+") or _SECRET_KEY.search(bare) or _looks_like_token(value):
            pieces.add(value)
    pieces.add(parts.fragment)
    decoded = {unquote(p) for p in pieces}
    return {p for p in pieces | decoded if len(p) >= _MIN_SECRET_LEN}


def _scrub(text: str, urls: Iterable[str] = ()) -> str:
    """Remove from ``text`` anything of ``urls`` that may be secret, and mask URLs in it.

    apprise's messages sometimes quote the offending value ("An invalid ... token (xyz) was
    specified"), so a reason taken from its log is never trusted as is.
    """
    for url in urls:
        for piece in sorted(_secret_pieces(url), key=len, reverse=True):
            text = text.replace(piece, "****")
    return _URL_IN_TEXT.sub(lambda m: _mask_generic(m.group(0)), text)


# --- building apprise services -----------------------------------------------------------


class _Hush(logging.Filter):
    """Takes apprise's records from this thread out of the log, keeping their messages.

    A filter on the logger (not a handler) so the records stop here: building a service to
    validate or mask a URL should not log "Could not load ..." once per call; the caller
    reports the reason itself. Records from other threads (sends in apprise's workers)
    pass untouched.
    """

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        if record.levelno >= logging.WARNING:
            try:
                self.messages.append(record.getMessage())
            except Exception:  # a malformed record must not break URL validation
                self.messages.append(str(record.msg))
        return False


def _asset() -> Any:
    # Memory-only storage: newsmon runs read-only in containers and keeps its own state.
    return apprise.AppriseAsset(storage_mode="memory")


def _instantiate(url: str) -> tuple[Any | None, str | None]:
    """Build apprise's service object for ``url``: (service, None) or (None, masked reason)."""
    capture = _Hush()
    logger = logging.getLogger("apprise")
    logger.addFilter(capture)
    try:
        plugin = apprise.Apprise.instantiate(url, asset=_asset(), suppress_exceptions=True)
    except Exception as exc:  # third-party code: a surprise is a reason, not a crash
        plugin, capture.messages = None, [f"{type(exc).__name__}: {exc}"]
    finally:
        logger.removeFilter(capture)
    if plugin is not None:
        return plugin, None
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if not scheme:
        reason = "not a URL (expected scheme://...)"
    elif scheme not in N_MGR:
        reason = f"unknown scheme {scheme}://"
    else:
        reason = "; ".join(dict.fromkeys(capture.messages)) or "apprise rejected the URL"
    return None, _scrub(reason, [url])


def validate_channel_url(url: str) -> str | None:
    """Return None when ``url`` can be used as a channel URL, else the (masked) reason.

    ``console://`` is ours; everything else must be a URL that apprise can build a service
    from. Nothing is sent and no connection is made.
    """
    if _is_console(url):
        return None if url.strip().lower() == CONSOLE_URL else "console:// takes no options"
    return _instantiate(url)[1]


# --- what a service's answer means ---------------------------------------------------------

# Statuses after which a resend cannot succeed until someone changes the configuration:
# credentials refused (401, 403) or the endpoint gone (404: a deleted webhook, bot or
# chat). The outbox dead-letters these at once; `newsmon alerts retry` sends them again
# after the fix. 429, 5xx, timeouts and refused connections stay temporary.
_PERMANENT_STATUS = frozenset({401, 403, 404})
# apprise's services end a failure line with "error=<HTTP status>."
_STATUS = re.compile(r"\berror=(\d{3})\b")
# An SMTP server's 535 ("authentication credentials invalid"), as our mail send reports it:
# the mail counterpart of a 401.
_SMTP_AUTH_REFUSED = re.compile(r"\(535\b")
# Telegram says "Too Many Requests: retry after 17"; some services quote a Retry-After.
_RETRY_AFTER = re.compile(r"\bretry[ -]after:?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_AUTH_REFUSED = re.compile(r"\b(error=40[13]|unauthori[sz]ed|forbidden)\b", re.IGNORECASE)
# Longest reason kept; a service that dumps a whole HTML error page is cut here.
_MAX_REASON = 500


def _statuses(text: str) -> set[int]:
    return {int(code) for code in _STATUS.findall(text)}


def _retry_after(text: str) -> float | None:
    found = [float(seconds) for seconds in _RETRY_AFTER.findall(text)]
    return max(found) if found else None


def _outcome(result: Any, urls: tuple[str, ...]) -> tuple[SendOutcome, set[int]]:
    """apprise's result as a ``SendOutcome``, with the HTTP statuses its services logged."""
    if result:
        return SendOutcome(True), set()
    lines: list[str] = []
    for service in result:
        if service:
            continue
        where = _mask_generic(str(service.url)).partition("?")[0]
        said = [entry.message for entry in service.logs()]
        status = str(service.status.name).lower()
        text = "; ".join(dict.fromkeys(m.strip() for m in said if m.strip())) or status
        if status == "timeout" and "time" not in text.lower():
            text = f"timed out; {text}"
        lines.append(f"{service.name} {where}: {text}")
    if not lines:
        said = [entry.message for entry in result.call_logs()]
        lines.append("; ".join(dict.fromkeys(said)) or f"apprise: {result.status.name.lower()}")
    reason = " | ".join(lines)
    statuses = _statuses(reason)
    permanent = bool(statuses & _PERMANENT_STATUS) or bool(_SMTP_AUTH_REFUSED.search(reason))
    if _AUTH_REFUSED.search(reason) or _SMTP_AUTH_REFUSED.search(reason):
        reason += " (authentication refused: check the channel's credentials)"
    elif permanent:
        reason += " (the service says it will not accept this: check the channel's URL)"
    outcome = SendOutcome(
        False,
        _scrub(reason, urls)[:_MAX_REASON],
        permanent=permanent,
        retry_after=_retry_after(reason),
    )
    return outcome, statuses


def _combine(outcomes: list[SendOutcome]) -> SendOutcome:
    """One outcome for a channel: ok only when every URL's was; permanent when any was."""
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return SendOutcome(True)
    waits = [o.retry_after for o in failed if o.retry_after is not None]
    return SendOutcome(
        False,
        " | ".join(o.error or "failed" for o in failed)[:_MAX_REASON],
        permanent=any(o.permanent for o in failed),
        retry_after=max(waits) if waits else None,
    )


# --- email with a stable Message-ID ------------------------------------------------------------

_MESSAGE_ID_DOMAIN = "newsmon.invalid"


def message_id(delivery: Delivery) -> str:
    """The Message-ID of ``delivery``'s email: the same for every resend of one alert.

    A resend after a crash (sent, then killed before the outbox recorded it) then reaches
    the reader as the same message, which mail clients and list servers fold into one.
    The alert id alone could repeat across two newsmon databases, so a digest of the
    alert's key (rule, story, channel) goes with it.
    """
    key = f"{delivery.rule}\x1f{delivery.story}\x1f{delivery.channel}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return f"<alert-{delivery.alert_id}.{digest}@{_MESSAGE_ID_DOMAIN}>"


def _with_message_id(raw: str, value: str) -> str:
    """The serialised message ``raw`` with its Message-ID header(s) replaced by ``value``."""
    head, blank, rest = raw.partition("\n\n")
    kept: list[str] = []
    dropping = False
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and dropping:
            continue  # a folded continuation of the header being dropped
        dropping = line.lower().startswith("message-id:")
        if not dropping:
            kept.append(line)
    kept.append(f"Message-ID: {value}")
    return "\n".join(kept) + blank + rest


class _StableIdMail(NotifyEmail):  # type: ignore[no-untyped-call]  # apprise is untyped here
    """apprise's SMTP email, sending the Message-ID it is given instead of a random one.

    apprise adds its own random Message-ID after any header set in the URL (a
    ``+Message-ID=`` argument would give the message two, which RFC 5322 forbids and big
    providers reject), and offers no hook between building a message and sending it. So
    this one call is redone here from apprise's public parts, ``prepare_emails`` and its
    SMTP controller, with the header replaced in between. Built per alert, never shared.
    """

    def __init__(self, message_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self._message_id = message_id

    def send(
        self,
        body: str,
        title: str = "",
        notify_type: Any = None,
        attach: Any = None,
        body_format: Any = None,
        **kwargs: Any,
    ) -> bool:
        me: Any = self  # apprise's email attributes and methods carry no types
        if not me.targets:
            me.logger.warning("There are no Email recipients to notify")
            return False
        me.throttle()
        headers = {"X-Application": me.app_id, **me.headers, **me._protocol_headers(body)}
        failed = False
        try:
            with AppriseSMTPController(
                host=me.smtp_host,
                port=me.port,
                secure_mode=me.secure_mode,
                user=me.user,
                password=me.password,
                verify_certificate=me.verify_certificate,
                socket_connect_timeout=me.socket_connect_timeout,
            ) as smtp:
                messages = NotifyEmail.prepare_emails(
                    subject=title,
                    body=body,
                    notify_format=self.resolve_format(body_format),
                    from_addr=me.from_addr,
                    to=me.targets,
                    cc=me.cc,
                    bcc=me.bcc,
                    reply_to=me.reply_to,
                    smtp_host=me.smtp_host,
                    attach=attach,
                    headers=headers,
                    names=me.names,
                    pgp=me.pgp,
                    pgp_mode=me.pgp_mode,
                    inline=me.inline,
                    tzinfo=me.tzinfo,
                )
                for message in messages:
                    if me.is_delivered(message.recipient):
                        continue
                    raw = _with_message_id(message.body, self._message_id)
                    if smtp.sendmail(me.from_addr[1], message.to_addrs, raw):
                        me.mark_delivered(message.recipient)
                    else:
                        me.logger.warning('Sending email to "%s" failed.', message.recipient)
                        failed = True
        except (
            OSError,
            smtplib.SMTPException,
            RuntimeError,
            AppriseImproperlyConfigured,
            AppriseEmailException,
        ) as exc:
            me.logger.warning("Could not send email through %s: %s", me.smtp_host, exc)
            failed = True
        return not failed


# --- the notifier ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """One URL of a channel, built once: its service and how to write for it."""

    url: str  # as configured; only ever used to scrub secrets out of reasons
    service: Any  # apprise.Apprise holding this one service
    body_format: str  # "text" | "markdown" | "html"
    blends_title: bool  # the service puts the title into the body: escape it for the format
    telegram: bool  # a refused (400) formatted message is resent as plain text
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
    services = apprise.Apprise(asset=_asset())
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
        telegram=isinstance(plugin, NotifyTelegram),
        mail=mail or None,
    )


def _build_route(channel: Channel) -> _Route:
    targets: list[_Target] = []
    problems: list[str] = []
    console = False
    for url in channel.urls:
        if _is_console(url):
            reason = validate_channel_url(url)
            if reason is None:
                console = True
            else:
                problems.append(f"{mask_url(url)}: {reason}")
            continue
        plugin, reason = _instantiate(url)
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
    broken = _scrub("; ".join(problems), channel.urls) if problems else None
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
    - Telegram: a formatted message that Telegram refuses (HTTP 400, "can't parse
      entities") is sent once more as plain text;
    - SMTP email: the Message-ID is ``message_id(delivery)``, the same on every resend;
    - 401, 403 and 404 answers are permanent failures; others are temporary, with the
      service's requested wait in ``retry_after`` when it said one.
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
            return SendOutcome(False, _scrub(str(exc), route.urls)[:_MAX_REASON], permanent=True)
        if route.targets:
            outcome = _combine(
                list(
                    await asyncio.gather(
                        *(self._send_to(t, rendered, delivery) for t in route.targets)
                    )
                )
            )
            if not outcome.ok:
                return outcome
        text = rendered[TEXT]
        return self._console(route, text.title, text.body)

    async def send_text(self, channel: str, title: str, body: str) -> SendOutcome:
        """Send a plain-text message through ``channel`` (also `newsmon send-test`).

        ``ok`` only when every URL of the channel accepted it. The title is made one line
        here whatever the caller passed, so no service can take part of it for a header.
        """
        route = self._routes.get(channel)
        if route is None:
            return SendOutcome(False, f"channel {channel!r} is not in the configuration")
        if route.broken is not None:
            return SendOutcome(False, route.broken, permanent=True)
        message = Rendered(title=clean_line(title), body=body, body_format=TEXT)
        if route.targets:
            sends = [self._notify(t, t.service, message) for t in route.targets]
            outcome = _combine([o for o, _ in await asyncio.gather(*sends)])
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
        self, target: _Target, rendered: Mapping[str, Rendered], delivery: Delivery
    ) -> SendOutcome:
        service = target.service
        if target.mail is not None:
            service = _mail_service(target.mail, message_id(delivery))
        message = rendered[target.body_format]
        outcome, statuses = await self._notify(target, service, message)
        if outcome.ok or not target.telegram or 400 not in statuses:
            return outcome
        if message.body_format == TEXT:
            return outcome
        # Telegram refused the markup (a tag or entity it cannot parse): the words matter
        # more than the bold, so the alert goes once more as plain text.
        fallback, _ = await self._notify(target, service, rendered[TEXT])
        if fallback.ok:
            log.warning(
                "Telegram refused the formatted alert, sent as plain text: %s", outcome.error
            )
            return fallback
        return SendOutcome(
            False,
            f"{outcome.error}; as plain text: {fallback.error}"[:_MAX_REASON],
            permanent=fallback.permanent,
            retry_after=fallback.retry_after,
        )

    async def _notify(
        self, target: _Target, service: Any, message: Rendered
    ) -> tuple[SendOutcome, set[int]]:
        title = message.title
        if target.blends_title and message.body_format != TEXT:
            # apprise converts a text title itself; a formatted one it takes as markup.
            title = escape_title(message.body_format, title)
        try:
            result = await service.async_notify(
                body=message.body,
                title=title,
                body_format=_APPRISE_FORMAT[message.body_format],
                timeout=self._timeout,
            )
        except Exception as exc:  # apprise promises a result; a surprise is one failure
            reason = f"apprise failed: {type(exc).__name__}: {exc}"
            return SendOutcome(False, _scrub(reason, (target.url,))[:_MAX_REASON]), set()
        try:
            return _outcome(result, (target.url,))
        finally:
            result.close()


_APPRISE_FORMAT = {
    TEXT: apprise.NotifyFormat.TEXT,
    MARKDOWN: apprise.NotifyFormat.MARKDOWN,
    HTML: apprise.NotifyFormat.HTML,
}


def _mail_service(parsed: Mapping[str, Any], message_id: str) -> Any:
    """An apprise holding one email service for one alert (built per send: concurrent
    sends of one channel must not share the Message-ID)."""
    services = apprise.Apprise(asset=_asset())
    services.add(_StableIdMail(message_id=message_id, **{**parsed, "asset": _asset()}))
    return services
