"""Secrets never shown: channel URLs and service messages with credentials masked.

``mask_generic`` keeps a URL recognisable (scheme, host, the first characters of a token) and
hides what would let someone else send through the channel; ``services.mask_url`` tries apprise's
own privacy URL first and falls back on it. ``scrub`` masks the same secrets in free text from a
service (apprise quotes tokens in some of its messages). Pure string functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

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


def is_console(url: str) -> bool:
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


def mask_generic(url: str) -> str:
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


# Parameters apprise writes into every URL it prints: noise in a log line, never a secret.
_APPRISE_DEFAULTS = frozenset({"overflow=upstream", "retry=0", "wait=0.5", "optional=no"})


def drop_defaults(url: str) -> str:
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


def scrub(text: str, urls: Iterable[str] = ()) -> str:
    """Remove from ``text`` anything of ``urls`` that may be secret, and mask URLs in it.

    apprise's messages sometimes quote the offending value ("An invalid ... token (xyz) was
    specified"), so a reason taken from its log is never trusted as is.
    """
    for url in urls:
        for piece in sorted(_secret_pieces(url), key=len, reverse=True):
            text = text.replace(piece, "****")
    return _URL_IN_TEXT.sub(lambda m: mask_generic(m.group(0)), text)
