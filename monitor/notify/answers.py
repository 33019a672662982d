"""What the HTTP services answered, read where apprise's services make their requests.

apprise's services call ``requests`` themselves and report a failure only as a log line
("... error=429."), without the response's headers, so the Retry-After of a Slack, Discord or
webhook endpoint never reaches the caller. ``listening()`` records the status and the
Retry-After and Date headers of every response to the sends made inside it, and
``retry_after`` turns them into the wait the service asked for.

Contract:

- ``requests.Session.send`` (every ``requests.post``/``request`` goes through it) is wrapped
  once, the first time ``listening()`` is entered. The wrapper records a response only when
  the context it runs in holds a recorder, and otherwise passes everything through untouched.
- apprise runs each service's send in a worker thread with a copy of the caller's context
  (``contextvars.copy_context``), so a recorder set around one ``async_notify`` sees that
  send's responses and nothing else: not a concurrent send of another channel, not another
  library's requests.
- ``retry_after`` never raises: an unreadable header is no wait, a wait is at most
  ``MAX_RETRY_AFTER``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

__all__ = ["MAX_RETRY_AFTER", "Answer", "listening", "retry_after"]

# Statuses whose Retry-After asks the client to wait before it tries again (RFC 9110
# §10.2.3 for 503, RFC 6585 for 429). On a 3xx it means something else: not a wait.
_WAIT_STATUS = frozenset({429, 503})
# The longest wait honoured, in seconds: a day covers a daily quota's reset. A longer (or
# garbled) value would park an alert for good; beyond a day the outbox tries once more and
# the service says again how long.
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP response a service got, as far as waiting is concerned."""

    status: int
    retry_after: str | None  # the header as sent: delta-seconds or an HTTP date
    date: str | None  # the response's Date header: an HTTP-date Retry-After is relative to it
    received: float  # time.time() when it came: the reference when there is no Date


_RECORDER: ContextVar[list[Answer] | None] = ContextVar("newsmon_http_answers", default=None)
_install_lock = threading.Lock()
_installed = False


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        original = requests.Session.send

        @functools.wraps(original)
        def send(session: requests.Session, request: Any, **kwargs: Any) -> Any:
            response = original(session, request, **kwargs)
            box = _RECORDER.get()
            if box is not None:
                try:
                    headers = response.headers
                    box.append(
                        Answer(
                            status=int(response.status_code),
                            retry_after=headers.get("Retry-After"),
                            date=headers.get("Date"),
                            received=time.time(),
                        )
                    )
                except Exception:  # recording must never cost the send its response
                    pass
            return response

        requests.Session.send = send  # type: ignore[method-assign,assignment]
        _installed = True


@contextmanager
def listening() -> Iterator[list[Answer]]:
    """Record the answers to the HTTP requests made inside the block (in this context and in
    the worker threads apprise starts from it); the list fills as they come."""
    _install()
    box: list[Answer] = []
    token = _RECORDER.set(box)
    try:
        yield box
    finally:
        _RECORDER.reset(token)


def retry_after(answers: Iterable[Answer]) -> float | None:
    """Seconds to wait that the 429 and 503 answers asked for (the longest), at most
    ``MAX_RETRY_AFTER``; None when none asked."""
    waits = [w for a in answers if a.status in _WAIT_STATUS and (w := _seconds(a)) is not None]
    return min(max(waits), MAX_RETRY_AFTER) if waits else None


def _seconds(answer: Answer) -> float | None:
    """Retry-After as seconds from when it came: delta-seconds, or an HTTP date taken
    relative to the response's Date header (the server's clock), else to when it came."""
    value = (answer.retry_after or "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    when = _http_date(value)
    if when is None:
        return None
    sent = _http_date(answer.date or "") or datetime.fromtimestamp(answer.received, UTC)
    return max((when - sent).total_seconds(), 0.0)


def _http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)  # HTTP: GMT
