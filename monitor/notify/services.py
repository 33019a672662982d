"""apprise services: building them from URLs, what their answers mean, email with a stable ID.

- ``instantiate`` builds one apprise service from a URL, or says why it cannot (masked).
- ``outcome`` turns apprise's per-service result into a ``SendOutcome``: 401, 403 and 404 (and
  SMTP 535) are permanent; 429, other 4xx, 5xx and timeouts are temporary, with the wait a
  Retry-After asked for.
- ``message_id`` (an alert's), ``digest_message_id`` (a digest's) and the email service that
  sends it: a resend after a crash carries the same Message-ID, so mail clients recognise it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apprise
from apprise.apprise import N_MGR
from apprise.exception import AppriseImproperlyConfigured
from apprise.plugins.email import AppriseEmailException, NotifyEmail
from apprise.plugins.email.smtp import AppriseSMTPController

from monitor.model import Delivery

from .answers import MAX_RETRY_AFTER, Answer
from .answers import retry_after as header_wait
from .formats import HTML, MARKDOWN, TEXT
from .masking import CONSOLE_URL, drop_defaults, is_console, mask_generic, scrub

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """What one attempt to deliver an alert through one channel came to."""

    ok: bool
    error: str | None = None  # masked, human reason; None when ok
    permanent: bool = False  # retrying cannot help: bad URL or template, or 401/403/404
    retry_after: float | None = None  # seconds the service asked us to wait, when it said


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


def asset() -> Any:
    # Memory-only storage: newsmon runs read-only in containers and keeps its own state.
    return apprise.AppriseAsset(storage_mode="memory")


def instantiate(url: str) -> tuple[Any | None, str | None]:
    """Build apprise's service object for ``url``: (service, None) or (None, masked reason)."""
    capture = _Hush()
    logger = logging.getLogger("apprise")
    logger.addFilter(capture)
    try:
        plugin = apprise.Apprise.instantiate(url, asset=asset(), suppress_exceptions=True)
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
    return None, scrub(reason, [url])


def mask_url(url: str) -> str:
    """Return ``url`` with its secrets masked, for logs and CLI output.

    Where apprise knows the service, its ``url(privacy=True)`` decides which parts are
    secret; that text then goes through a generic pass too, because apprise prints HTTP
    header values (``+Authorization=...``) of its json/xml/form services in clear. URLs
    apprise does not know get the generic pass alone: passwords, token-like path segments,
    and values of query keys that name a credential. Never raises.
    """
    if is_console(url):
        return CONSOLE_URL
    plugin, _ = instantiate(url)
    if plugin is not None:
        try:
            return drop_defaults(mask_generic(str(plugin.url(privacy=True))))
        except Exception:  # a plugin's url() is third-party code; fall back below
            pass
    return mask_generic(url)


# Options apprise appends to every URL it prints, at their default values: noise in a log line.


def validate_channel_url(url: str) -> str | None:
    """Return None when ``url`` can be used as a channel URL, else the (masked) reason.

    ``console://`` is ours; everything else must be a URL that apprise can build a service
    from. Nothing is sent and no connection is made.
    """
    if is_console(url):
        return None if url.strip().lower() == CONSOLE_URL else "console:// takes no options"
    return instantiate(url)[1]


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
MAX_REASON = 500


def _statuses(text: str) -> set[int]:
    return {int(code) for code in _STATUS.findall(text)}


def _retry_after(text: str) -> float | None:
    found = [float(seconds) for seconds in _RETRY_AFTER.findall(text)]
    return max(found) if found else None


def outcome(
    result: Any, urls: tuple[str, ...], answers: Sequence[Answer] = ()
) -> tuple[SendOutcome, set[int]]:
    """apprise's result as a ``SendOutcome``, with the HTTP statuses its services logged.

    ``answers``: the HTTP responses the send got (``answers.listening``); the wait a 429 or
    503 asked for in its Retry-After header goes into ``retry_after``, as does a wait that a
    service put in its error text (Telegram's "retry after 17").
    """
    if result:
        return SendOutcome(True), set()
    lines: list[str] = []
    for service in result:
        if service:
            continue
        where = mask_generic(str(service.url)).partition("?")[0]
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
    waits = [w for w in (_retry_after(reason), header_wait(answers)) if w is not None]
    outcome = SendOutcome(
        False,
        scrub(reason, urls)[:MAX_REASON],
        permanent=permanent,
        retry_after=min(max(waits), MAX_RETRY_AFTER) if waits else None,
    )
    return outcome, statuses


def combine(outcomes: list[SendOutcome]) -> SendOutcome:
    """One outcome for a channel: ok only when every URL's was; permanent when any was."""
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return SendOutcome(True)
    waits = [o.retry_after for o in failed if o.retry_after is not None]
    return SendOutcome(
        False,
        " | ".join(o.error or "failed" for o in failed)[:MAX_REASON],
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


def digest_message_id(deliveries: Sequence[Delivery]) -> str:
    """The Message-ID of the digest email carrying ``deliveries``: the same for every resend
    of that digest (the same alerts, in any order), another for any other set of alerts.

    A digest sent, then lost to a crash before the outbox marked its rows, is claimed again
    as the same rows and resent: mail clients fold the two copies into one. Each alert's key
    goes into the digest with its id, as in ``message_id``.
    """
    keys = sorted(f"{d.alert_id}\x1f{d.rule}\x1f{d.story}\x1f{d.channel}" for d in deliveries)
    digest = hashlib.sha256("\x1e".join(keys).encode("utf-8")).hexdigest()[:24]
    return f"<digest-{len(keys)}.{digest}@{_MESSAGE_ID_DOMAIN}>"


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


APPRISE_FORMAT = {
    TEXT: apprise.NotifyFormat.TEXT,
    MARKDOWN: apprise.NotifyFormat.MARKDOWN,
    HTML: apprise.NotifyFormat.HTML,
}


def mail_service(parsed: Mapping[str, Any], message_id: str) -> Any:
    """An apprise holding one email service for one alert (built per send: concurrent
    sends of one channel must not share the Message-ID)."""
    services = apprise.Apprise(asset=asset())
    services.add(_StableIdMail(message_id=message_id, **{**parsed, "asset": asset()}))
    return services
