"""Alert channels: apprise URLs plus the built-in ``console://``, and secret masking.

Contract:

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

import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import apprise
from apprise.apprise import N_MGR

from monitor.model import Channel, Delivery

from .render import clean_line, render

__all__ = [
    "CONSOLE_URL",
    "Notifier",
    "SendOutcome",
    "mask_url",
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
    permanent: bool = False  # retrying cannot help: an invalid URL or unknown scheme
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


# --- the notifier ------------------------------------------------------------------------

# An apprise reason that says the credentials were refused. Reported in the error text but
# not made permanent: the fix is a new token in the config, and the outbox's backoff keeps
# the alert alive (for max_attempts tries) until someone makes it.
_AUTH_REFUSED = re.compile(r"\b(error=40[13]|unauthori[sz]ed|forbidden)\b", re.IGNORECASE)
# Longest reason kept; a service that dumps a whole HTML error page is cut here.
_MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class _Route:
    """One channel, built once: its apprise services and whether it prints to the console."""

    name: str
    urls: tuple[str, ...]  # as configured; only ever used to scrub secrets out of reasons
    services: Any  # apprise.Apprise holding every non-console URL; None when there is none
    console: bool
    broken: str | None  # masked reason when a URL could not be built: the channel cannot work


def _build_route(channel: Channel) -> _Route:
    plugins: list[Any] = []
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
            plugins.append(plugin)
    if not channel.urls:
        problems.append("the channel has no URL")
    services = None
    if plugins:
        services = apprise.Apprise(asset=_asset())
        services.add(plugins)
    broken = _scrub("; ".join(problems), channel.urls) if problems else None
    return _Route(channel.name, tuple(channel.urls), services, console, broken)


class Notifier:
    """Sends alerts through the configured channels.

    Built once per configuration (a reload builds a new one). ``send`` and ``send_text`` may
    be awaited concurrently, for the same channel too. A channel whose URLs apprise cannot
    build is logged once here and answers every send with a permanent failure; an unknown
    channel name answers with a temporary one (the configuration may bring it back).
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
                log.error("channel %r cannot send: %s", route.name, route.broken)

    @property
    def timeout(self) -> float:
        """Seconds one send may last at most (the outbox keeps its leases longer than this)."""
        return self._timeout

    @property
    def channels(self) -> frozenset[str]:
        """The names of the configured channels."""
        return frozenset(self._routes)

    async def send(self, delivery: Delivery) -> SendOutcome:
        """Render ``delivery`` and send it through its channel."""
        title, body = render(delivery)
        return await self.send_text(delivery.channel, title, body)

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
        title = clean_line(title)
        if route.services is not None:
            outcome = await self._notify(route, title, body)
            if not outcome.ok:
                return outcome
        if route.console:
            try:
                self._write_console(title, body)
            except (OSError, ValueError) as exc:  # closed or broken stdout
                return SendOutcome(False, f"console: {type(exc).__name__}: {exc}")
        return SendOutcome(True)

    def _write_console(self, title: str, body: str) -> None:
        stream = self._stdout if self._stdout is not None else sys.stdout
        stream.write(f"=== {title}\n{body}\n\n")
        stream.flush()

    async def _notify(self, route: _Route, title: str, body: str) -> SendOutcome:
        try:
            result = await route.services.async_notify(
                body=body,
                title=title,
                body_format=apprise.NotifyFormat.TEXT,
                timeout=self._timeout,
            )
        except Exception as exc:  # apprise promises a result; a surprise is one failure
            reason = f"apprise failed: {type(exc).__name__}: {exc}"
            return SendOutcome(False, _scrub(reason, route.urls)[:_MAX_REASON])
        try:
            if result:
                return SendOutcome(True)
            return SendOutcome(False, _reason(result, route.urls))
        finally:
            result.close()


def _reason(result: Any, urls: tuple[str, ...]) -> str:
    """One line out of apprise's result: which service failed and what it logged."""
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
    if _AUTH_REFUSED.search(reason):
        reason += " (authentication refused: check the channel's credentials)"
    return _scrub(reason, urls)[:_MAX_REASON]
