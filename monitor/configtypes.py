"""The value types of the configuration: durations, sizes, URLs, networks, zones, cron, hours.

Each is an ``Annotated`` type for pydantic: a parser or validator that raises ``ValueError``
with a message a user can act on, and the JSON Schema the editor sees. Durations are ``90s``,
``5m``, ``24h``, ``7d`` or combinations (``1h30m``); a bare number is seconds. Sizes are
``512KB``, ``15MB``, ``1GiB``; KB/MB/GB/TB are powers of 1000 and KiB/MiB/GiB/TiB powers of
1024, as their SI and IEC names say; a bare number is bytes.
"""

from __future__ import annotations

import ipaddress
import re
import zoneinfo
from datetime import time as dt_time
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    WithJsonSchema,
)

from monitor.configyaml import describe

# --- durations and sizes --------------------------------------------------------------------

_DURATION = re.compile(
    r"(?:(?P<d>\d+(?:\.\d+)?)d)?\s*(?:(?P<h>\d+(?:\.\d+)?)h)?\s*"
    r"(?:(?P<m>\d+(?:\.\d+)?)m)?\s*(?:(?P<s>\d+(?:\.\d+)?)s)?"
)
UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str | int | float) -> timedelta:
    """``"90s"``, ``"5m"``, ``"24h"``, ``"7d"``, ``"1h30m"`` -> timedelta; a number is seconds.

    Units go largest first, each at most once; lower case only, so that ``M`` (month?) is never
    guessed. Raises ValueError with a message fit for the user.
    """
    if isinstance(text, bool):  # bool is an int; `interval: yes` is a mistake, not 1 second
        raise ValueError(f"invalid duration {text!r} (use 90s, 5m, 24h, 7d)")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"invalid duration {text!r}: negative")
        return timedelta(seconds=text)
    if not isinstance(text, str):
        raise ValueError(f"expected a duration such as 90s, 5m, 24h, 7d, got {describe(text)}")
    stripped = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", stripped):
        return timedelta(seconds=float(stripped))
    match = _DURATION.fullmatch(stripped)
    if not stripped or match is None or not any(match.groupdict().values()):
        raise ValueError(f"invalid duration {text!r} (use 90s, 5m, 24h, 7d)")
    seconds = sum(
        float(value) * UNIT_SECONDS[unit] for unit, value in match.groupdict().items() if value
    )
    return timedelta(seconds=seconds)


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(text: str | int) -> int:
    """``"15MB"`` -> 15_000_000, ``"512KiB"`` -> 524_288; a bare number is bytes.

    KB, MB, GB, TB are 1000-based and KiB, MiB, GiB, TiB 1024-based; units ignore case.
    Raises ValueError with a message fit for the user.
    """
    if isinstance(text, bool) or not isinstance(text, int | str):
        raise ValueError(f"expected a size such as 512KB, 15MB, 1GiB, got {describe(text)}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid size {text!r}: negative")
        return text
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid size {text!r} (use 512KB, 15MB, 1GiB)")
    number, unit = match.groups()
    try:
        total = Decimal(number) * _SIZE_UNITS[(unit or "b").lower()]
    except InvalidOperation as exc:  # pragma: no cover - the pattern admits only decimals
        raise ValueError(f"invalid size {text!r}") from exc
    if total != total.to_integral_value():
        raise ValueError(f"invalid size {text!r}: not a whole number of bytes")
    return int(total)


# --- field types ----------------------------------------------------------------------------


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


def _http_url(value: str) -> str:
    # The value itself is not echoed: feed URLs may carry access tokens.
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https"):
        shown = f"'{parts.scheme}'" if parts.scheme else "none"
        raise ValueError(f"feed url must start with http:// or https:// (scheme: {shown})")
    if not parts.hostname:
        raise ValueError("feed url has no host")
    return value.strip()


def _apprise_url(value: str) -> str:
    if "://" not in value:  # not echoed: channel URLs carry tokens and passwords
        raise ValueError("channel url must look like scheme://... (an apprise URL or console://)")
    return value


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip()))
    except ValueError as exc:
        hint = ""
        try:
            hint = f"; did you mean {ipaddress.ip_network(value.strip(), strict=False)}?"
        except ValueError:
            pass
        raise ValueError(
            f"invalid network {value!r} (use a CIDR such as 10.0.0.0/8){hint}"
        ) from exc


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name such as Asia/Tehran)"
        ) from exc
    return value


# minute, hour, day of month, month, day of week; names as cron spells them.
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())},
)
_CRON_FIELD = ("minute", "hour", "day of month", "month", "day of week")


def _cron(value: str) -> str:
    fields = value.split()
    if len(fields) != 5:
        raise ValueError(f"expected a 5-field cron line like '0 8 * * *', got {len(fields)} fields")
    for n, text in enumerate(fields):
        low, high = _CRON_RANGES[n]
        for part in text.split(","):
            base, _, step = part.partition("/")
            if step and not step.isdigit():
                raise ValueError(f"bad step {part!r} in the {_CRON_FIELD[n]} field")
            bounds = [] if base == "*" else base.split("-", 1)
            for bound in bounds:
                number = _CRON_NAMES[n].get(bound.lower())
                if number is None and bound.isdigit():
                    number = int(bound)
                if number is None or not low <= number <= high:
                    raise ValueError(
                        f"{bound!r} is not valid in the {_CRON_FIELD[n]} field ({low}-{high})"
                    )
    return value


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def check_log_level(value: str) -> str:
    level = value.upper()
    if level not in LEVELS:
        raise ValueError(f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, not {value!r}")
    return level


# How the field types read in the JSON Schema (`json_schema()`): the forms a user writes in YAML,
# not the Python values they become (a timedelta would otherwise show as ISO 8601 "PT30S").
_NUMBER = r"\d+(\.\d+)?"
_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "string",
            # The lookahead refuses an empty string; units largest first, as parse_duration.
            "pattern": rf"^\s*(?=\d)({_NUMBER}|({_NUMBER}d)?\s*({_NUMBER}h)?\s*"
            rf"({_NUMBER}m)?\s*({_NUMBER}s)?)\s*$",
            "examples": ["90s", "5m", "24h", "7d", "1h30m"],
        },
        {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
    ],
}
_SIZE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "string",
            "pattern": rf"^\s*{_NUMBER}\s*([KkMmGgTt][Ii]?[Bb]|[Bb])?\s*$",
            "examples": ["512KB", "15MB", "1GiB"],
        },
        {"type": "integer", "exclusiveMinimum": 0, "description": "bytes"},
    ],
}
APPRISE_URL_SCHEMA: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": "://"}

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    AfterValidator(_positive),
    WithJsonSchema(_DURATION_SCHEMA),
]
Size = Annotated[int, BeforeValidator(parse_size), Field(gt=0), WithJsonSchema(_SIZE_SCHEMA)]
Name = Annotated[str, Field(min_length=1)]
HttpUrl = Annotated[
    str,
    AfterValidator(_http_url),
    WithJsonSchema({"type": "string", "pattern": r"^\s*[Hh][Tt][Tt][Pp][Ss]?://[^/\s]"}),
]
AppriseUrl = Annotated[
    str, Field(min_length=1), AfterValidator(_apprise_url), WithJsonSchema(APPRISE_URL_SCHEMA)
]
Network = Annotated[
    str, AfterValidator(_network), WithJsonSchema({"type": "string", "examples": ["10.0.0.0/8"]})
]
TimeZone = Annotated[
    str, AfterValidator(_timezone), WithJsonSchema({"type": "string", "examples": ["UTC"]})
]
Cron = Annotated[
    str,
    AfterValidator(_cron),
    WithJsonSchema({"type": "string", "pattern": r"^\s*\S+(\s+\S+){4}\s*$"}),
]


_HOURS = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def _quiet_hours(value: str) -> str:
    if not _HOURS.match(value):
        raise ValueError(f"expected local hours like '22:00-07:00', got {value!r}")
    start, end = hours_of(value)
    if start == end:
        raise ValueError(f"quiet hours {value!r} start and end at the same time")
    return value


def hours_of(value: str) -> tuple[dt_time, dt_time]:
    m = _HOURS.match(value)
    assert m is not None
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    return dt_time(h1, m1), dt_time(h2, m2)


QuietHours = Annotated[
    str,
    AfterValidator(_quiet_hours),
    WithJsonSchema({"type": "string", "pattern": _HOURS.pattern, "examples": ["22:00-07:00"]}),
]
