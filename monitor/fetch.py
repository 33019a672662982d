"""One HTTP GET done right: conditional, bounded, polite and guarded.

Contract
--------
``Fetcher.fetch(url, etag=..., last_modified=...)`` makes one conditional GET and always returns
a :class:`~monitor.model.FetchResult`. DNS failures, refused connections, TLS errors, the
deadline, an oversize body, a bad scheme, a redirect loop, a refused address and HTTP 4xx/5xx
are values: ``error`` holds a short reason and ``status`` the last HTTP status, if any came.
Exceptions escape only for the caller's misuse (an invalid ``allow_networks`` entry) and for
cancellation.

One ``Fetcher`` per process; ``fetch`` is safe to call from many tasks of one event loop at once.
Every limit comes from :class:`~monitor.model.HttpPolicy`:

- deadline: ``timeout`` seconds for the whole request, every redirect and the body read
  included. The clock starts when the first hop holds its slots, because queueing behind other
  feeds of the same host is not this server's fault. ``elapsed`` is measured the same way.
- body: at most ``max_body`` bytes counted after decompression (gzip and deflate are asked
  for; whatever aiohttp can decode is accepted). The body is read in 64 KiB chunks and the
  read stops at the first chunk that would pass the cap, so no more than the cap plus one chunk
  is ever held. Decompression itself is bounded by aiohttp (>= 3.13.3, CVE-2025-69223).
- concurrency: ``concurrency`` requests in flight in all, ``per_host`` to one host name.
- redirects: followed one hop at a time, at most ``max_redirects``; http and https only.
  ``permanent_redirect`` is the final URL when every hop was a 301 or 308.

Address guard
-------------
Unless ``allow_private_networks`` is set, no connection is made to a loopback, private, link-local,
carrier-grade NAT, unspecified, multicast or reserved address, unless it lies inside one of
``allow_networks``. IPv6 forms that carry an IPv4 address (``::ffff:a.b.c.d``, 6to4, NAT64) are
judged by that IPv4 address. Names are checked where aiohttp connects: :class:`GuardedResolver`
filters what the resolver returns, so the addresses checked are the addresses connected to and
DNS rebinding cannot slip between a check and the connect. aiohttp never calls the resolver for a
host that looks like an IP literal (``TCPConnector._resolve_host`` returns it as is, in aiohttp
3.14), so ``fetch`` checks such hosts itself before every hop.

Clock
-----
``elapsed`` uses the event loop's monotonic clock. A ``Retry-After`` given as an HTTP date is
measured from the response's ``Date`` header; only when the server sends none is it measured from
``time.time()``. That is the one wall-clock read below the scheduler, acceptable here because
this module is an edge that talks to the world and the value it yields is a relative duration.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from types import MappingProxyType, TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

# yarl is aiohttp's own URL type. The guard must read a URL exactly as the connector will; a second
# parser (urllib) would open the door to parser-differential tricks.
from yarl import URL

from monitor.model import FetchResult, HttpPolicy

__all__ = ["ACCEPT", "ACCEPT_PAGE", "AddressGuard", "AddressRefused", "Fetcher", "GuardedResolver"]

# Feed formats first; generic XML next, because many feeds are served as application/xml or
# text/xml; anything else last, since some servers answer 406 to an Accept without */*.
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, */*;q=0.8"
)
# Article pages (full text): HTML first; some sites answer a feed-first Accept with their feed.
ACCEPT_PAGE = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
_CHUNK = 64 * 1024  # body read size: the most the body buffer may be asked to exceed the cap by
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: the last 32 bits

# Checked in order, the first match names the refusal. Written out instead of read from
# ipaddress's is_private/is_global, whose answers changed between Python patch releases;
# `is_global` is still consulted afterwards as a catch-all for what this table leaves out.
_REFUSED = tuple(
    (ipaddress.ip_network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("169.254.0.0/16", "link-local"),  # holds the cloud metadata service 169.254.169.254
        ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
        ("192.0.2.0/24", "reserved"),  # documentation
        ("198.18.0.0/15", "reserved"),  # benchmarking
        ("198.51.100.0/24", "reserved"),  # documentation
        ("203.0.113.0/24", "reserved"),  # documentation
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # includes the broadcast address
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "private"),  # unique local addresses
        ("fe80::/10", "link-local"),
        ("fec0::/10", "private"),  # deprecated site-local
        ("ff00::/8", "multicast"),
        ("::/8", "reserved"),  # includes the deprecated IPv4-compatible ::a.b.c.d
        ("100::/64", "reserved"),  # discard-only
        ("2001:db8::/32", "reserved"),  # documentation
    )
)


class AddressRefused(OSError):
    """The address guard refused every address of a host. Its text is the user-facing reason.

    An ``OSError`` so that aiohttp treats it like any failed lookup (wraps it in
    ``ClientConnectorDNSError`` and never connects).
    """


class AddressGuard:
    """Decides whether an address may be connected to. Pure; safe to share."""

    def __init__(self, allow_networks: Iterable[str] = ()) -> None:
        """Raise ValueError for an entry that is not a network ("10.1.0.0/16") or address."""
        self._allowed = tuple(ipaddress.ip_network(net) for net in allow_networks)

    def refusal(self, address: str, host: str) -> str | None:
        """The reason to refuse connecting to `address` on behalf of `host`; None to allow."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return f"refused address {address} (not an IP address) for host {host}"
        target = _carried_ipv4(ip) or ip
        if any(target in net for net in self._allowed):
            return None
        why = next((why for net, why in _REFUSED if target in net), None)
        if why is None and not target.is_global:
            why = "not globally routable"
        if why is None:
            return None
        if target is not ip:
            why = f"{why}, as {target}"
        return f"refused address {address} ({why}) for host {host}"

    def literal_refusal(self, host: str) -> str | None:
        """The refusal for a URL host that is an IP literal; None for a name or an allowed one.

        aiohttp takes any host holding a colon, or only digits and dots, for an address and
        connects to it without resolving (``aiohttp.helpers.is_ip_address``). Such a host must
        therefore be a canonical address that this guard can judge: ``127.1`` or ``0177.0.0.1``
        would otherwise reach the loopback interface through the socket layer.
        """
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if ":" in host or host.replace(".", "").isdigit():
                return f"refused address {host} (not a canonical IP address)"
            return None
        return self.refusal(host, host)


def _carried_ipv4(ip: _IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address delivers to (mapped, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


class GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then keeps only the addresses `guard` allows.

    Raises :class:`AddressRefused` naming the first refused address when none is left. aiohttp
    connects only to what this returns, so the check holds at connect time.
    """

    def __init__(self, inner: AbstractResolver, guard: AddressGuard) -> None:
        self._inner = inner
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        allowed: list[ResolveResult] = []
        refusals: list[str] = []
        for found in await self._inner.resolve(host, port, family):
            reason = self._guard.refusal(found["host"], host)
            if reason is None:
                allowed.append(found)
            else:
                refusals.append(reason)
        if not allowed:
            raise AddressRefused(refusals[0] if refusals else f"no address for host {host}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class _Failed(Exception):
    """Stops a fetch; its text becomes ``FetchResult.error``. Never leaves this module."""


@dataclass(frozen=True, slots=True)
class _Answer:
    """The status line and headers of one hop's response."""

    status: int
    headers: Mapping[str, str]  # lower-case names


@dataclass(slots=True)
class _HostSlots:
    semaphore: asyncio.Semaphore
    users: int = 0  # requests holding or awaiting a slot; the entry is dropped at zero


class Fetcher:
    """One per process; safe to call concurrently. See the module docstring for the contract."""

    def __init__(
        self,
        policy: HttpPolicy,
        *,
        allow_networks: Sequence[str] = (),
        resolver: AbstractResolver | None = None,
    ) -> None:
        """`allow_networks`: CIDRs ("10.1.0.0/16", "127.0.0.1/32") allowed even when the policy
        refuses private networks (intranet feeds). Raises ValueError for a malformed entry.

        `resolver`: turns host names into addresses; aiohttp's default when None. The address
        guard filters whatever it answers, so it decides where names lead, never what is
        allowed (tests pass one to stage DNS rebinding). The caller owns it: `close` leaves it
        open."""
        guard = AddressGuard(allow_networks)
        self._policy = policy
        self._names = resolver
        self._guard = None if policy.allow_private_networks else guard
        self._all = asyncio.Semaphore(policy.concurrency)
        self._hosts: dict[str, _HostSlots] = {}
        self._session: aiohttp.ClientSession | None = None
        self._resolver: AbstractResolver | None = None

    async def __aenter__(self) -> Fetcher:
        self._client()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close connections. A later `fetch` opens a new session."""
        session, resolver = self._session, self._resolver
        self._session = self._resolver = None
        if session is not None:
            await session.close()
        # The connector closes only resolvers it made itself; a resolver passed in stays open.
        if resolver is not None and self._names is None:
            await resolver.close()

    async def fetch(
        self,
        url: str,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        accept: str = ACCEPT,
    ) -> FetchResult:
        """GET `url`, sending `etag` and `last_modified` back byte for byte as validators.

        `accept`: the Accept header; feeds by default, ``ACCEPT_PAGE`` for article pages.
        """
        conditional: dict[str, str] = {} if accept == ACCEPT else {"Accept": accept}
        if etag is not None:
            conditional["If-None-Match"] = etag
        if last_modified is not None:
            conditional["If-Modified-Since"] = last_modified
        loop = asyncio.get_running_loop()
        started: float | None = None
        final = url
        hops: list[int] = []  # statuses of the redirects followed
        answer: _Answer | None = None  # the response of the URL in `final`, once it came
        body: bytes | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(None) as deadline:
                target = _parse(url)
                seen = {target}
                while True:
                    self._admit(target)
                    async with self._slot(target.raw_host or ""):
                        if started is None:
                            started = loop.time()
                            deadline.reschedule(started + self._policy.timeout)
                        async with self._get(target, conditional) as response:
                            answer = _Answer(response.status, _headers(response))
                            if response.status == 200:
                                body = await self._read(response)
                    if answer.status not in _REDIRECTS:
                        break
                    target = self._next_hop(target, answer, hops, seen)
                    hops.append(answer.status)
                    seen.add(target)
                    final, answer = str(target), None
        except _Failed as failure:
            error = _printable(str(failure))
        except TimeoutError:
            error = f"timeout after {self._policy.timeout:g}s"
        elapsed = loop.time() - started if started is not None else 0.0
        return _result(url, final, answer, body, error, hops, etag, last_modified, elapsed)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            resolver: AbstractResolver = self._names or aiohttp.DefaultResolver()
            if self._guard is not None:
                resolver = GuardedResolver(resolver, self._guard)
            self._resolver = resolver
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(resolver=resolver, limit=self._policy.concurrency),
                timeout=aiohttp.ClientTimeout(),  # no aiohttp timeouts: fetch's deadline rules
                headers={
                    "User-Agent": self._policy.user_agent,
                    "Accept": ACCEPT,
                    "Accept-Encoding": "gzip, deflate",
                },
                cookie_jar=aiohttp.DummyCookieJar(),  # one feed's cookies never reach another
                trust_env=False,  # a proxy from the environment would connect past the guard
            )
        return self._session

    @asynccontextmanager
    async def _slot(self, host: str) -> AsyncIterator[None]:
        """Hold one of `host`'s slots, then one of all. Taken in this order, a request waiting
        for a busy host never sits on a global slot that other hosts could use, and no request
        ever holds a global slot while it waits."""
        slots = self._hosts.get(host)
        if slots is None:
            slots = self._hosts[host] = _HostSlots(asyncio.Semaphore(self._policy.per_host))
        slots.users += 1
        try:
            async with slots.semaphore, self._all:
                yield
        finally:
            slots.users -= 1
            if not slots.users:
                del self._hosts[host]

    def _admit(self, target: URL) -> None:
        """Refuse a hop before any connection: scheme, missing host, refused IP-literal host."""
        _check_scheme(target, "")
        if not target.raw_host:
            raise _Failed(f"invalid URL {str(target)!r}: no host")
        if self._guard is not None and (reason := self._guard.literal_refusal(target.raw_host)):
            raise _Failed(reason)

    def _next_hop(self, current: URL, answer: _Answer, hops: list[int], seen: set[URL]) -> URL:
        location = answer.headers.get("location")
        if not location:
            raise _Failed(f"HTTP {answer.status} redirect without a Location")
        try:
            target = current.join(URL(location))
        except ValueError:
            raise _Failed(f"redirect to an invalid URL {location!r}") from None
        _check_scheme(target, "redirect to ")
        if len(hops) >= self._policy.max_redirects:
            raise _Failed(f"too many redirects (more than {self._policy.max_redirects})")
        if target in seen:
            raise _Failed(f"redirect loop at {target.with_user(None)}")  # no credentials in logs
        return target

    @asynccontextmanager
    async def _get(
        self, target: URL, headers: Mapping[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One request; aiohttp's errors become `_Failed` with a short reason."""
        try:
            async with self._client().get(
                target, headers=headers, allow_redirects=False
            ) as response:
                yield response
        except (aiohttp.ClientError, OSError) as exc:
            raise _Failed(_describe(exc, target)) from exc

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        cap = self._policy.max_body
        too_large = f"body larger than {cap} bytes"
        if "content-encoding" not in response.headers and (response.content_length or 0) > cap:
            response.close()
            raise _Failed(too_large)
        body = bytearray()
        async for chunk in response.content.iter_chunked(_CHUNK):
            if len(body) + len(chunk) > cap:
                response.close()  # drop the connection rather than drain the rest
                raise _Failed(too_large)
            body += chunk
        return bytes(body)


# Control characters in a reason, which may quote what a server sent (a Location, a bad status
# line): written as escapes, so a reason is one log line and never a terminal escape sequence.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _printable(text: str) -> str:
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def _parse(url: str) -> URL:
    try:
        return URL(url)
    except (TypeError, ValueError):
        raise _Failed(f"invalid URL {url!r}") from None


def _check_scheme(target: URL, context: str) -> None:
    if target.scheme not in ("http", "https"):
        raise _Failed(f"{context}unsupported scheme {target.scheme!r} (http and https only)")


def _headers(response: aiohttp.ClientResponse) -> Mapping[str, str]:
    """Lower-case names; repeated fields joined with ", " as RFC 9110 section 5.3 allows."""
    merged: dict[str, str] = {}
    for name, value in response.headers.items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return MappingProxyType(merged)


def _describe(exc: BaseException, target: URL) -> str:
    host = target.raw_host
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if isinstance(exc.os_error, AddressRefused):
            return str(exc.os_error)
        return f"DNS lookup failed for {host}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate error for {host}: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS error for {host}: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connection to {host} failed: {_os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return f"{host} closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"broken body: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"invalid HTTP response: {exc.message}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid URL {str(exc.url)!r}"
    return f"{type(exc).__name__}: {exc}"


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _result(
    url: str,
    final: str,
    answer: _Answer | None,
    body: bytes | None,
    error: str | None,
    hops: list[int],
    etag: str | None,
    last_modified: str | None,
    elapsed: float,
) -> FetchResult:
    if answer is None:
        return FetchResult(url, final, None, None, error=error, elapsed=elapsed)
    status, headers = answer.status, answer.headers
    if error is None and status not in (200, 304):
        error = f"HTTP {status} {_phrase(status)}".rstrip()
    new_etag = new_modified = None
    if error is None:  # validators of an error page must not replace the stored ones
        new_etag, new_modified = headers.get("etag"), headers.get("last-modified")
        if status == 304:  # a 304 may omit them: the ones sent are still current
            new_etag = etag if new_etag is None else new_etag
            new_modified = last_modified if new_modified is None else new_modified
    permanent = error is None and bool(hops) and all(hop in _PERMANENT for hop in hops)
    return FetchResult(
        url=url,
        final_url=final,
        status=status,
        body=body if error is None and status == 200 else None,
        headers=headers,
        etag=new_etag,
        last_modified=new_modified,
        not_modified=error is None and status == 304,
        error=error,
        retry_after=_retry_after(headers),
        permanent_redirect=final if permanent else None,
        elapsed=elapsed,
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _retry_after(headers: Mapping[str, str]) -> timedelta | None:
    """Retry-After as a duration from now: delta-seconds, or an HTTP date taken relative to the
    response's Date header (else the wall clock). None when absent or unreadable; never negative.
    """
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        try:
            return timedelta(seconds=int(value))
        except (OverflowError, ValueError):  # absurdly large: ignore rather than guess
            return None
    when = _http_date(value)
    if when is None:
        return None
    now = _http_date(headers.get("date", "")) or datetime.fromtimestamp(time.time(), UTC)
    return max(when - now, timedelta(0))


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)  # HTTP dates: GMT
