"""Logging: one line per event, text or JSON, safe against hostile text and never a secret.

``configure_logging(level, fmt, stream)`` installs one handler on the root logger.

Where an event's fields come from
    newsmon logs events as ``log.info("polled feed=%s status=%s new=%d", name, status, n)``.
    Each ``key=%x`` placeholder of the *format string* names a field, and its argument is the
    value: ``{"feed": name, "status": status, "new": n}``. Keys are taken from our own constant
    format strings, never from the rendered text, so a feed title holding ``" rule=x"`` cannot
    add or change a field. Fields passed with ``extra={"feed": ...}`` are added too (the
    format string wins on a clash). Placeholders without a ``key=`` are message text only.

Text lines
    ``2026-11-23T07:10:00.123Z INFO newsmon polled feed=aawsat status=200 new=3``: ISO 8601 UTC
    time, level, logger, message. A ``key=`` value that is empty or holds spaces, quotes or
    ``=`` is written in double quotes with ``\\"`` and ``\\\\`` escaped, so the line stays
    parseable as logfmt. A traceback follows on lines indented by two spaces.

JSON lines
    ``{"ts": "...", "level": "INFO", "logger": "newsmon", "message": "polled feed=...",
    "feed": "aawsat", "status": 200, "new": 3}``; numbers, booleans and null stay JSON types,
    datetimes are ISO 8601 strings, anything else its ``str()``. A traceback is ``"exc"``.
    Fields named ts, level, logger, message or exc are dropped rather than overwrite those.

Hostile text
    In messages and values, terminal escape sequences (ESC [ ..., OSC, 8-bit CSI) are removed
    and every other control character, line and paragraph separator and bidirectional
    override is written as a visible escape (``\\n``, ``\\x07``, ``\\u202e``): one event is
    one line whatever a feed sends, and a terminal showing the log is not reprogrammed.

Secrets
    Every URL in a message or value goes through ``monitor.notify.mask_url`` (passwords,
    token-like path segments and credential query values masked), and so do ``extra`` values.
    A secret that is not part of a URL must not be logged at all: that is the caller's duty.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any, Literal, TextIO

from monitor.notify import mask_url

LogFormat = Literal["text", "json"]

# Libraries that are chatty at INFO; their warnings still come through. urllib3 at DEBUG prints
# request lines with their query strings, where tokens live.
QUIET_LOGGERS = ("apprise", "aiohttp.access", "apscheduler", "alembic", "urllib3")

# --- cleaning hostile text -------------------------------------------------------------------

_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, screen clears
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"  # DCS, SOS, PM, APC strings
    r"|\x1b[ -/]*[0-~]?"  # other two- and three-byte sequences, or a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_VISIBLE = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escapes() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]:
        table[code] = _VISIBLE.get(chr(code), f"\\x{code:02x}")
    # Line/paragraph separators end a line for some readers; bidi overrides and isolates
    # reorder what a terminal shows ("Trojan Source"). ZWNJ and RLM, which Persian text uses,
    # are left alone.
    for code in [0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        table[code] = f"\\u{code:04x}"
    return table


_ESCAPE_TABLE = _escapes()
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


@functools.lru_cache(maxsize=2048)
def _masked(url: str) -> str:
    # Feed URLs recur on every poll; mask_url builds an apprise object, ~0.3 ms a call.
    return mask_url(url)


def clean(text: str) -> str:
    """`text` safe for one log line: escape sequences removed, control characters escaped,
    URLs masked."""
    if "\x1b" in text or "\x9b" in text:
        text = _ESCAPE_SEQUENCE.sub("", text)
    text = text.translate(_ESCAPE_TABLE)
    if "://" in text:
        text = _URL.sub(lambda m: _masked(m.group(0)), text)
    return text


# --- fields --------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(
    r"%(?:\((?P<name>[^)]*)\))?[#0 +\-]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?[hlL]?"
    r"(?P<conv>[diouxXeEfFgGcrsa%])"
)
_KEY_BEFORE = re.compile(r"(?:^|[\s(,\[])([A-Za-z_][A-Za-z0-9_.-]*)=$")
_RESERVED_OUT = frozenset({"ts", "level", "logger", "message", "exc"})
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", None, None)),
        "message",
        "asctime",
        "taskName",
    }
)


@functools.lru_cache(maxsize=1024)
def _template_keys(template: str) -> tuple[str | None, ...] | None:
    """For each placeholder of `template` in order, its ``key=`` name or None; None when the
    template uses a form we do not map (``%(name)s``, ``*`` widths)."""
    keys: list[str | None] = []
    for found in _PLACEHOLDER.finditer(template):
        if found.group("conv") == "%":
            continue
        if found.group("name") is not None or "*" in (
            (found.group("width") or "") + (found.group("prec") or "")
        ):
            return None
        before = _KEY_BEFORE.search(template, 0, found.start())
        keys.append(before.group(1) if before else None)
    return tuple(keys)


def _keyed_args(record: logging.LogRecord) -> list[tuple[str | None, Any]] | None:
    if not isinstance(record.msg, str) or not isinstance(record.args, tuple) or not record.args:
        return None
    keys = _template_keys(record.msg)
    if keys is None or len(keys) != len(record.args):
        return None
    return list(zip(keys, record.args, strict=True))


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return clean(str(value))


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The event's fields as JSON values: ``extra=`` attributes, then ``key=%s`` arguments."""
    fields: dict[str, Any] = {}
    for name, value in vars(record).items():
        if name not in _RECORD_ATTRS and not name.startswith("_"):
            fields[name] = _json_value(value)
    for key, value in _keyed_args(record) or ():
        if key is not None:
            fields[key] = _json_value(value)
    for name in _RESERVED_OUT & fields.keys():
        del fields[name]
    return fields


# --- formatters ----------------------------------------------------------------------------


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.fromtimestamp(record.created, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a wrong number of arguments must not lose the event
        return f"{record.msg} {record.args!r}"


_NEEDS_QUOTES = re.compile(r'[\s"=\\]')


def _logfmt(value: Any) -> Any:
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger message``, cleaned; ``key=`` values quoted where needed."""

    def format(self, record: logging.LogRecord) -> str:
        pairs = _keyed_args(record)
        if pairs is None:
            message = _message(record)
        else:
            args = tuple(
                _logfmt(v) if k is not None and _is_s(record, i) else v
                for i, (k, v) in enumerate(pairs)
            )
            try:
                message = str(record.msg) % args
            except Exception:
                message = _message(record)
        line = f"{_timestamp(record)} {record.levelname} {clean(record.name)} {clean(message)}"
        extra = _traceback(self, record)
        return line + "".join(f"\n  {clean(part)}" for part in extra)


@functools.lru_cache(maxsize=1024)
def _string_placeholders(template: str) -> tuple[bool, ...]:
    return tuple(
        m.group("conv") == "s" for m in _PLACEHOLDER.finditer(template) if m.group("conv") != "%"
    )


def _is_s(record: logging.LogRecord, index: int) -> bool:
    # Only %s takes the quoted text: %r quotes already, %d and %.2f need the number itself.
    return _string_placeholders(str(record.msg))[index]


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> Iterable[str]:
    parts: list[str] = []
    if record.exc_info:
        parts += formatter.formatException(record.exc_info).splitlines()
    elif record.exc_text:
        parts += record.exc_text.splitlines()
    if record.stack_info:
        parts += formatter.formatStack(record.stack_info).splitlines()
    return parts


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the event's fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": clean(record.name),
            "message": clean(_message(record)),
        }
        out.update(event_fields(record))
        trace = _traceback(self, record)
        if trace:
            out["exc"] = "\n".join(clean(line) for line in trace)
        # ensure_ascii=False keeps Persian and Arabic readable; clean() has already escaped
        # every character that could break the line.
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(
    level: str | int = "INFO", fmt: LogFormat = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record at `level` or above to `stream` (default: standard error) as one
    line each, in `fmt`. Replaces the root logger's handlers; returns the new handler.

    Raises ValueError for an unknown `fmt` or level name.
    """
    if fmt == "text":
        formatter: logging.Formatter = TextFormatter()
    elif fmt == "json":
        formatter = JsonFormatter()
    else:
        raise ValueError(f"unknown log format {fmt!r} (text or json)")
    numeric = level if isinstance(level, int) else logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))
    # Python's warnings (deprecations in a dependency) become events in the same format.
    logging.captureWarnings(True)
    return handler
