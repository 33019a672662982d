"""A real HTTP server on 127.0.0.1 for tests: feeds, validators, redirects and misbehaviour.

`FeedServer` is an aiohttp.web application on an ephemeral port. Tests register what each path
answers, point real clients at `url(path)` (the fetcher, or a newsmon subprocess) and then assert
on what the server saw: `requests`, `hits(path)`, `max_in_flight`.

    async with FeedServer() as server:
        server.add("/feed.xml", (REAL_FEEDS / "rss-parser" / "guardian.rss").read_bytes())
        result = await fetcher.fetch(server.url("/feed.xml"))
        assert server.hits("/feed.xml") == 1

It runs on whichever event loop starts it (`async with`, or `await start()` and `await close()`),
so an end-to-end test can serve feeds from the pytest loop while a subprocess polls them.
Registrations may change while it runs: `add` on a path replaces what that path answers.
Unregistered paths answer 404. All state is per instance; nothing is global.
`FeedServer(host="::1")` serves on the IPv6 loopback instead.
"""

from __future__ import annotations

import asyncio
import gzip as gzip_module
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import TracebackType

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

RSS = "application/rss+xml"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as it arrived, recorded before it was answered."""

    method: str
    path: str  # decoded path, without the query
    query: str  # raw query string; "" when none
    headers: Mapping[str, str]  # case-insensitive, exactly as received


class FeedServer:
    """A real HTTP/1.1 server on 127.0.0.1, port chosen by the OS. See the module docstring."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        """`host`: the loopback address to bind, "127.0.0.1" or "::1"."""
        self.host = host
        self.requests: list[RecordedRequest] = []  # every request, in arrival order
        self.in_flight = 0  # requests being answered now
        self.max_in_flight = 0  # the most answered at once since start (or `reset`)
        self._routes: dict[str, Handler] = {}
        self._closing = asyncio.Event()  # releases `hang` and `endless` handlers at close
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind `host` on a free port and start serving."""
        app = web.Application(middlewares=[self._observe])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        # handler_cancellation: a client that gives up cancels its handler, so `in_flight`
        # falls at once and a trickling handler stops writing.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        self._runner = runner
        self._port = runner.addresses[0][1]

    async def close(self) -> None:
        """Stop serving; handlers still waiting (`hang`, `endless`, `slow`) are released."""
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FeedServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FeedServer is not started")
        return self._port

    def url(self, path: str, *, host: str | None = None) -> str:
        """The absolute URL of `path`; `host` may name the server otherwise ("localhost")."""
        if host is None:
            host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{_rooted(path)}"

    # --- what paths answer -----------------------------------------------------------------

    def add(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = RSS,
        etag: str | None = "auto",
        last_modified: str | None = None,
        gzip: bool = False,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Serve `body` at `path`, replacing whatever the path answered before.

        etag: "auto" is a quoted hash of `body`; None sends no ETag; any other string is sent
            as is. last_modified: an HTTP date sent as Last-Modified, or None.
        A 200 resource honours If-None-Match (weak comparison, `*`) and, when no If-None-Match
        came, If-Modified-Since: a match answers 304 with the validators and `headers`.
        gzip: compress `body` now and send it with Content-Encoding: gzip. To serve bytes that
            are gzip already (the corpus's compressed.xml), leave gzip False and pass
            headers={"Content-Encoding": "gzip"}.
        status: any status; non-200 statuses answer with `body` and ignore validators.
        headers: extra response headers, which win over the defaults (a fixed "Date", a
            "Retry-After", "Cache-Control", ...).
        delay: seconds to wait before answering (to hold requests in flight, or past a deadline).
        """
        payload = gzip_module.compress(body, mtime=0) if gzip else body
        tag = f'"{hashlib.sha256(body).hexdigest()[:20]}"' if etag == "auto" else etag
        fixed: dict[str, str] = {"Content-Type": content_type}
        if gzip:
            fixed["Content-Encoding"] = "gzip"
        if tag is not None:
            fixed["ETag"] = tag
        if last_modified is not None:
            fixed["Last-Modified"] = last_modified
        fixed.update(headers or {})

        async def serve(request: web.Request) -> web.StreamResponse:
            if delay:
                await asyncio.sleep(delay)
            if status == 200 and _not_modified(request, tag, last_modified):
                return web.Response(status=304, headers=fixed)
            return web.Response(status=status, body=payload, headers=fixed)

        self.route(path, serve)

    def redirect(self, path: str, to: str, status: int = 301) -> None:
        """Answer `path` with `status` and `Location: to`, sent verbatim (relative allowed)."""

        async def serve(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, headers={"Location": to})

        self.route(path, serve)

    def slow(
        self, path: str, body: bytes, *, bytes_per_second: float, content_type: str = RSS
    ) -> None:
        """Send the headers (with the full Content-Length) at once, then trickle `body`."""
        step = max(1, int(bytes_per_second / 10))  # ten writes a second

        async def serve(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": content_type})
            response.content_length = len(body)
            await response.prepare(request)
            for start in range(0, len(body), step):
                await response.write(body[start : start + step])
                if await self._closed_within(step / bytes_per_second):
                    break
            return response

        self.route(path, serve)

    def hang(self, path: str) -> None:
        """Accept the request and never answer, until the client gives up or the server closes."""

        async def serve(request: web.Request) -> web.StreamResponse:
            await self._closing.wait()
            return web.Response(status=503)

        self.route(path, serve)

    def endless(self, path: str, *, chunk: bytes = b"<item>x</item>\n" * 4096) -> None:
        """Stream `chunk` again and again without a Content-Length, as fast as the client reads."""

        async def serve(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": RSS})
            await response.prepare(request)
            while not self._closing.is_set():
                await response.write(chunk)
            return response

        self.route(path, serve)

    def route(self, path: str, handler: Handler) -> None:
        """Answer `path` with any aiohttp handler: the way to stage a fault no method covers."""
        self._routes[_rooted(path)] = handler

    # --- what the server saw ---------------------------------------------------------------

    def hits(self, path: str) -> int:
        """How many requests arrived for `path` (query strings ignored)."""
        path = _rooted(path)
        return sum(1 for request in self.requests if request.path == path)

    def reset(self) -> None:
        """Forget recorded requests and the in-flight high-water mark (routes stay)."""
        self.requests.clear()
        self.max_in_flight = self.in_flight

    # --- internals -------------------------------------------------------------------------

    @web.middleware
    async def _observe(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(request.method, request.path, request.query_string, request.headers)
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        handler = self._routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="not found")
        return await handler(request)

    async def _closed_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            return False
        return True


def _rooted(path: str) -> str:
    return path if path.startswith("/") else f"/{path}"


def _not_modified(request: web.Request, etag: str | None, last_modified: str | None) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match decides when present, else If-Modified-Since."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        if etag is None:
            return False
        if if_none_match.strip() == "*":
            return True
        wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return etag.removeprefix("W/") in wanted
    if_modified_since = request.headers.get("If-Modified-Since")
    if if_modified_since is None or last_modified is None:
        return False
    try:
        return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False
