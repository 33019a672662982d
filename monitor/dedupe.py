"""Exact-duplicate keys: canonical URLs, content fingerprints and story keys.

Pure functions over strings. Near-duplicate signatures (MinHash, LSH band keys, a compact band
index) live in `monitor.neardup` and are re-exported at the end of this module. The exact keys:

- `canonical_url` maps the many spellings of one article's address to one key, so the same
  article reached through a newsletter link, a social share or a syndication partner is one
  story. The result is a key for comparison, not a URL to fetch.
- `content_hash` recognises an item re-posted under a new GUID (feeds that rotate ids).
- `story_key` names a new story after the item that started it.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Near-duplicate signatures live in monitor.neardup (numpy, MinHash + LSH); re-exported here so
# callers see one dedupe room.
from monitor.neardup import (
    BANDS,
    MIN_WORDS_FOR_NEAR_DUP,
    NEAR_DUP_THRESHOLD,
    NUM_PERM,
    ROWS,
    SIGNATURE_BYTES,
    band_keys,
    repeated_lines,
    signature,
    similarities,
    similarity,
)

# Query parameters that identify the campaign or the click, never the article. Seen on news links
# shared through newsletters, social networks and analytics redirectors.
_TRACKING_PREFIXES = ("utm_", "at_", "ns_", "mc_", "pk_", "mtm_", "hsa_", "oly_")
_TRACKING_NAMES = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "igshid",
        "mkt_tok",
        "_ga",
        "_gl",
        "cmpid",
        "ocid",
        "smid",
        "sr_share",
        "ito",
        "xtor",
        "rss",
        "feed",
        "ref_src",
        "via",
    }
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_KEY = 1024

# Below this many words a title-plus-summary is too generic ("Live updates", "Morning briefing")
# for equal text to mean the same report; such items join stories only by GUID or URL.
MIN_WORDS_FOR_CONTENT_MATCH = 12

_WORD = re.compile(r"\w+", re.UNICODE)


def _is_tracking(name: str) -> bool:
    low = name.lower()
    return low in _TRACKING_NAMES or low.startswith(_TRACKING_PREFIXES)


def canonical_url(url: str | None) -> str | None:
    """The comparison key of an article URL, or None for anything that is not http(s).

    Lower-cased scheme and host, `www.` dropped, default port dropped, fragment dropped,
    tracking parameters removed (the others keep their order), `http` and `https` folded
    together: outlets serve one article under both, and a key must not split them.
    """
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower().rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)
    ]
    path = parts.path or "/"
    key = urlunsplit(("https", host, path, urlencode(query, doseq=True), ""))
    # The key is indexed; PostgreSQL refuses b-tree entries over ~2.7 KB. A URL this long is
    # compared by its digest instead (equal URLs, equal digests).
    if len(key) > MAX_URL_KEY:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def _words(text: str) -> list[str]:
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def content_words(title: str, body: str) -> int:
    """How many words the fingerprint of (title, body) is made of."""
    return len(_words(title)) + len(_words(body))


def content_hash(title: str, body: str) -> str:
    """A fingerprint of the words of title and body; case, punctuation and spacing ignored."""
    digest = hashlib.sha256()
    digest.update(" ".join(_words(title)).encode())
    digest.update(b"\x1f")
    digest.update(" ".join(_words(body)).encode())
    return "sha256:" + digest.hexdigest()[:32]


def story_key(feed: str, guid: str) -> str:
    """The key of a story started by the item (feed, guid): stable across processes and replicas."""
    digest = hashlib.sha256(f"{feed}\x1f{guid}".encode()).hexdigest()
    return "s:" + digest[:24]


__all__ = [
    "BANDS",
    "MAX_URL_KEY",
    "MIN_WORDS_FOR_CONTENT_MATCH",
    "MIN_WORDS_FOR_NEAR_DUP",
    "NEAR_DUP_THRESHOLD",
    "NUM_PERM",
    "ROWS",
    "SIGNATURE_BYTES",
    "band_keys",
    "canonical_url",
    "content_hash",
    "content_words",
    "repeated_lines",
    "signature",
    "similarities",
    "similarity",
    "story_key",
]
