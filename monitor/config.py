"""The configuration: YAML files in, validated `Settings` out, every error with file:line:column.

``load_config(path)`` reads the main file and every file its ``rule_files`` globs match, replaces
``${VAR}`` from the environment, validates the shape (pydantic, unknown keys rejected at every
level), checks the references between sections (rule -> channel, rule -> feed, unique names) and
compiles every rule query with ``monitor.rules``. It either returns a `Settings` or raises one
`ConfigError` that lists every problem found, not only the first.

Paths written in the config are relative to the directory that holds the config file, never to
the working directory: the daemon runs from anywhere under systemd, and a config must mean the
same thing wherever it is started from. That covers ``rule_files`` globs and relative SQLite
paths (``sqlite:///../var/newsmon.db`` next to ``config/newsmon.yaml`` is ``var/newsmon.db``).

Durations are ``90s``, ``5m``, ``24h``, ``7d`` or combinations (``1h30m``); a bare number is
seconds. Sizes are ``512KB``, ``15MB``, ``1GiB``; KB/MB/GB/TB are powers of 1000 and
KiB/MiB/GiB/TiB powers of 1024, as their SI and IEC names say; a bare number is bytes.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    model_validator,
)

from monitor import __version__, model
from monitor.configtypes import (
    APPRISE_URL_SCHEMA,
    LEVELS,
    AppriseUrl,
    Cron,
    Duration,
    HttpUrl,
    Name,
    Network,
    QuietHours,
    Size,
    TimeZone,
    check_log_level,
    hours_of,
    parse_duration,
    parse_size,
)
from monitor.configyaml import ConfigProblem, Document, ordered, read_document, validate
from monitor.rules import RuleErrors, compile_rules
from monitor.workers import DEFAULT_MEMORY, DEFAULT_TIMEOUT

__all__ = [
    "ChannelSettings",
    "ConfigError",
    "ConfigProblem",
    "FeedSettings",
    "HttpSettings",
    "PollingSettings",
    "RuleSettings",
    "Settings",
    "WorkerSettings",
    "load_config",
    "load_config_text",
    "parse_duration",
    "parse_size",
]


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists all that were found, in file order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class _Section(BaseModel):
    """A mapping of the config: unknown keys rejected, immutable once loaded.

    The docstring under a field is its description in the JSON Schema (`json_schema()`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        # `channels:` with every entry commented out is None in YAML; the author meant "none",
        # not a type error. Keys without a default stay, so a bare `url:` is still reported.
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            k: v
            for k, v in data.items()
            if v is not None
            or k not in fields
            or fields[k].is_required()
            or fields[k].default is None
        }


# --- the settings ---------------------------------------------------------------------------


class HttpSettings(_Section):
    """`http:`: the limits of every request (see model.HttpPolicy)."""

    user_agent: str = f"newsmon/{__version__} (+https://example.org/contact)"
    """Sent with every request: say who you are and how to reach you."""
    timeout: Duration = timedelta(seconds=30)
    """Deadline of one whole request, redirects included."""
    max_body: Size = 15 * 10**6
    """Larger bodies are refused, counted after decompression (KB = 1000, KiB = 1024)."""
    concurrency: int = Field(default=100, gt=0)
    """Requests in flight, all hosts together."""
    per_host: int = Field(default=2, gt=0)
    """Requests in flight to one host."""
    allow_private_networks: bool = False
    """Allow private, loopback and link-local addresses (intranet feeds, tests on 127.0.0.1)."""
    allow_networks: list[Network] = []
    """CIDRs reachable even when private networks are not."""


class PollingSettings(_Section):
    """`polling:`: defaults for every feed."""

    interval: Duration = timedelta(minutes=10)
    """Default time between two polls of a feed."""
    backlog_window: Duration = timedelta(hours=24)
    """On a feed's first poll, items older than this (or undated) are stored, never alerted."""
    expect_update: Duration = timedelta(days=2)
    """A feed failing or silent for longer is reported unwell (newsmon feeds, metrics, admin)."""


_DEDUPE = model.DedupePolicy()  # the measured defaults live in one place


class DedupeSettings(_Section):
    """`dedupe:`: how copies of a story are recognised (figures in docs/benchmarks.md)."""

    window: Duration = _DEDUPE.window
    """How far back a new item's near-duplicates are looked for."""
    threshold: Annotated[float, Field(gt=0, le=1)] = _DEDUPE.threshold
    """Estimated Jaccard similarity of 3-word shingles at which two texts are one report."""
    min_words: Annotated[int, Field(ge=10)] = _DEDUPE.min_words
    """Texts shorter than this (title and body) join stories only by URL, GUID or exact text."""

    def value(self) -> model.DedupePolicy:
        return model.DedupePolicy(self.window, self.threshold, self.min_words)


class WorkerSettings(_Section):
    """`workers:`: the limits of each task run in a worker process (parse, extract, signatures)."""

    timeout: Duration = timedelta(seconds=DEFAULT_TIMEOUT)
    """A task running longer is stopped (its worker killed); its feed fails with the reason."""
    memory: Size = DEFAULT_MEMORY
    """Memory a task may add to an idle worker (address space); past it the task fails alone."""


class FeedSettings(_Section):
    """One entry of `feeds:`."""

    name: Name
    """Unique; shown in alerts as the source."""
    url: HttpUrl
    """The RSS, Atom or JSON Feed address (http:// or https://)."""
    interval: Duration | None = None
    """Time between polls of this feed; absent: polling.interval."""
    full_text: bool = False
    """Fetch each item's article page and match its main text too."""
    tags: list[Name] = []
    """Labels that rules select feeds by (feeds: [tag:x])."""
    enabled: bool = True
    """false: kept in the config and the store, never polled."""
    expect_update: Duration | None = None
    """Failing or silent for longer: unwell; absent: polling.expect_update."""


class ChannelSettings(_Section):
    """One entry of `channels:`."""

    # One URL or a list; held as a list (a union would report a bad value once per branch).
    url: Annotated[
        list[AppriseUrl],
        BeforeValidator(lambda v: [v] if isinstance(v, str) else v),
        Field(min_length=1),
        WithJsonSchema(
            {
                "anyOf": [
                    APPRISE_URL_SCHEMA,
                    {"type": "array", "items": APPRISE_URL_SCHEMA, "minItems": 1},
                ]
            }
        ),
    ]
    """An apprise URL (or console://), or a list of them; ${VAR} keeps secrets out of the file."""
    digest: Cron | None = None
    """A 5-field cron line ("0 8 * * *") for one digest at those times; absent: instant."""
    timezone: TimeZone | None = None
    """The IANA time zone of the digest's cron line (Asia/Tehran)."""
    max_per_hour: int | None = Field(default=None, gt=0)
    """The most alerts this channel sends in one hour; beyond it, the rest go in one digest."""
    quiet_hours: QuietHours | None = None
    """Local hours ("22:00-07:00") when alerts of rules without priority: high are held."""
    format: Literal["auto", "text", "markdown", "html"] = "auto"
    """How alert bodies are written; auto: what the service renders best."""
    template: Name | None = None
    """A Jinja2 template file for the alert body (relative to this file); absent: built in."""

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(self.url)


class WebSettings(_Section):
    """`web:`: /healthz, /readyz and /metrics over HTTP."""

    enabled: bool = True
    """false: no HTTP endpoint at all."""
    listen: Name = "127.0.0.1:9464"
    """host:port to bind; keep it on localhost unless a proxy or firewall guards it."""


class RuleSettings(_Section):
    """One entry of `rules:` (in the main file or a rule file)."""

    name: Name
    """Unique across the config and every rule file; shown in alerts."""
    query: Name
    """The watch-rule query: words, "phrases", prefix*, AND/OR/NOT, NEAR/n, field:( ), @ALIAS."""
    channels: list[Name] = []
    """Channel names to alert; empty: every channel."""
    feeds: list[Name] = []
    """Feed names or tag:x to match items from; empty: every feed."""
    enabled: bool = True
    """false: kept, never matched."""
    priority: Literal["low", "normal", "high"] = "normal"
    """Stored with each alert this rule raises."""
    realert_on_update: bool = False
    """true: an alerted item whose text later changes materially (same GUID) alerts again."""
    _origin: str | None = PrivateAttr(default=None)  # "file:line", set by the loader

    def value(self) -> model.Rule:
        return model.Rule(
            name=self.name,
            query=self.query,
            channels=tuple(self.channels),
            feeds=tuple(self.feeds),
            enabled=self.enabled,
            priority=self.priority,
            origin=self._origin,
            realert_on_update=self.realert_on_update,
        )


class _RuleFile(_Section):
    rules: list[RuleSettings] = []


class Settings(_Section):
    """The whole configuration, validated.

    Built by `load_config` / `load_config_text`, which also check references and compile the
    rules. `Settings.model_validate(dict)` checks only the shape: fine for tests, not for users.
    `config_path` is where the file was loaded from (not a key of the file or of the schema).
    """

    database: str = "sqlite:///var/newsmon.db"
    """Any SQLAlchemy URL; a relative SQLite path is relative to this file's directory."""
    http: HttpSettings = HttpSettings()
    """The limits of every request."""
    polling: PollingSettings = PollingSettings()
    """Defaults for every feed."""
    dedupe: DedupeSettings = DedupeSettings()
    """How copies of a story are recognised across outlets and time."""
    workers: WorkerSettings = WorkerSettings()
    """Time and memory limits of parsing and article extraction; a change takes a restart."""
    aliases: dict[Name, list[Name]] = {}
    """Named word lists; a rule writes @NAME for any of them."""
    feeds: list[FeedSettings] = []
    """The feeds to poll."""
    channels: dict[Name, ChannelSettings] = {}
    """Where alerts go, by channel name."""
    rules: list[RuleSettings] = []
    """Watch rules."""
    rule_files: list[Name] = []
    """Globs of more rule files (each a mapping with a rules: list), relative to this file."""
    retention: Duration = timedelta(days=180)
    """Items their feed stopped listing longer ago than this are deleted with their matches (a
    daily job); what a feed still lists is kept, so it never comes back as new."""
    web: WebSettings = WebSettings()
    """The health and metrics endpoints."""
    log_format: Literal["text", "json"] = "text"
    """text: one readable line per event; json: one JSON object per line."""
    log_level: Annotated[
        str,
        AfterValidator(check_log_level),
        WithJsonSchema({"enum": [*LEVELS, *(level.lower() for level in LEVELS)]}),
    ] = "INFO"
    """DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)."""
    _config_path: Path = PrivateAttr(default=Path("<string>"))
    _file_rules: tuple[RuleSettings, ...] = PrivateAttr(default=())

    @property
    def config_path(self) -> Path:
        return self._config_path

    @property
    def all_rules(self) -> tuple[RuleSettings, ...]:
        """The rules of the main file, then those of the rule files in path order."""
        return (*self.rules, *self._file_rules)

    def feed_values(self) -> list[model.Feed]:
        """Every feed (enabled or not), its interval defaulted from polling.interval."""
        return [
            model.Feed(
                name=f.name,
                url=f.url,
                interval=f.interval or self.polling.interval,
                full_text=f.full_text,
                tags=tuple(f.tags),
                enabled=f.enabled,
                expect_update=f.expect_update or self.polling.expect_update,
            )
            for f in self.feeds
        ]

    def rule_values(self) -> list[model.Rule]:
        """Every rule (enabled or not), rule files included; `origin` is "file:line"."""
        return [rule.value() for rule in self.all_rules]

    def channel_values(self) -> dict[str, model.Channel]:
        """Every channel; a relative `template` path is resolved against this file's directory."""
        base = self.config_path.parent
        return {
            name: model.Channel(
                name,
                c.urls,
                format=c.format,
                template=str(base / c.template) if c.template else None,
                timezone=c.timezone or "UTC",
                digest=c.digest,
                max_per_hour=c.max_per_hour,
                quiet_hours=hours_of(c.quiet_hours) if c.quiet_hours else None,
            )
            for name, c in self.channels.items()
        }

    def http_policy(self) -> model.HttpPolicy:
        """The request limits; `http.allow_networks` is not part of it (pass it to the fetcher)."""
        h = self.http
        return model.HttpPolicy(
            user_agent=h.user_agent,
            timeout=h.timeout.total_seconds(),
            max_body=h.max_body,
            concurrency=h.concurrency,
            per_host=h.per_host,
            allow_private_networks=h.allow_private_networks,
        )


# --- loading --------------------------------------------------------------------------------


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Settings:
    """Load and check the config at `path`; `env` defaults to os.environ.

    Raises ConfigError listing every problem found, and FileNotFoundError (an OSError) when
    `path` cannot be read at all.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    return load_config_text(text, name=str(path), env=env, base_dir=path.parent)


def load_config_text(
    text: str,
    *,
    name: str = "<string>",
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Settings:
    """Like `load_config` for text already read; `name` is the file name shown in problems and
    `base_dir` (default: the working directory) is what relative paths are relative to."""
    base = (base_dir or Path.cwd()).absolute()
    environ = os.environ if env is None else env
    try:
        return _load(text, name, environ, base, fast=True)
    except ConfigError:
        # Problems are placed as PyYAML's own parser marks them: read again with it.
        return _load(text, name, environ, base, fast=False)


def _load(text: str, name: str, environ: Mapping[str, str], base: Path, *, fast: bool) -> Settings:
    main = read_document(text, name, environ, fast=fast)
    problems: list[ConfigProblem] = list(main.problems)
    data = main.data if main.data is not None else {}
    if not isinstance(data, dict):
        problems.append(main.problem((), "the config must be a mapping (database:, feeds:, ...)"))
        data = {}

    settings = validate(Settings, main, data, problems)
    rule_docs: list[tuple[Document, list[Any]]] = [(main, _list(data.get("rules")))]
    file_rules: list[RuleSettings] = []
    for doc, parsed in _read_rule_files(main, data, base, environ, problems, fast=fast):
        rule_docs.append(
            (doc, _list(doc.data.get("rules") if isinstance(doc.data, dict) else None))
        )
        if parsed is not None:
            file_rules.extend(_with_origins(doc, parsed.rules, "rules"))
    problems.extend(_check_references(main, data, rule_docs))
    problems.extend(_compile(rule_docs, data.get("aliases")))

    if problems or settings is None:
        raise ConfigError(ordered(problems, main.name))
    _with_origins(main, settings.rules, "rules")
    database = _resolve_sqlite(settings.database, base)
    if database != settings.database:
        settings = settings.model_copy(update={"database": database})
    settings._config_path = Path(name)
    settings._file_rules = tuple(file_rules)
    return settings


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _with_origins(doc: Document, rules: Sequence[RuleSettings], key: str) -> list[RuleSettings]:
    for i, rule in enumerate(rules):
        line, _ = doc.at((key, i))
        rule._origin = f"{doc.name}:{line}"
    return list(rules)


def _read_rule_files(
    main: Document,
    data: dict[str, Any],
    base: Path,
    env: Mapping[str, str],
    problems: list[ConfigProblem],
    *,
    fast: bool,
) -> list[tuple[Document, _RuleFile | None]]:
    """Every file matched by `rule_files`, in path order, each read (`fast`: see
    `read_document`) and shape-checked."""
    out: list[tuple[Document, _RuleFile | None]] = []
    seen: set[Path] = set()
    main_dir = os.path.dirname(main.name) if main.name != "<string>" else ""
    # `rule_files: ["*.yaml"]` would otherwise read the main file as a rule file.
    seen.add((base / os.path.basename(main.name)).resolve())
    for i, pattern in enumerate(_list(data.get("rule_files"))):
        if not isinstance(pattern, str):
            continue  # the shape check reports it
        for found in sorted(glob.glob(os.path.join(base, pattern), recursive=True)):
            path = Path(found).resolve()
            if path in seen or not path.is_file():
                continue
            seen.add(path)
            # Named the way the main file was named (config/newsmon.yaml -> config/rules/x.yaml),
            # so messages read the same whatever the working directory.
            shown = (
                found
                if os.path.isabs(pattern)
                else os.path.join(main_dir, os.path.relpath(found, base))
            )
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(main.problem(("rule_files", i), f"rule_files[{i}]: {shown}: {exc}"))
                continue
            doc = read_document(text, shown, env, fast=fast)
            problems.extend(doc.problems)
            if doc.data is None:
                out.append((doc, _RuleFile()))
            elif not isinstance(doc.data, dict):
                problems.append(doc.problem((), "a rule file must be a mapping with a rules: list"))
            else:
                out.append((doc, validate(_RuleFile, doc, doc.data, problems)))
    return out


def _check_references(
    main: Document, data: dict[str, Any], rule_docs: Sequence[tuple[Document, list[Any]]]
) -> list[ConfigProblem]:
    """Unique feed and rule names; rules naming channels and feeds that exist.

    Works on the raw data so that it runs even when the shape check failed elsewhere: the user
    sees every problem in one `newsmon check`. Values of the wrong shape are skipped here, the
    shape check has reported them.
    """
    problems: list[ConfigProblem] = []
    feed_names: dict[str, int] = {}
    tags: set[str] = set()
    for i, feed in enumerate(_list(data.get("feeds"))):
        if not isinstance(feed, dict):
            continue
        name = feed.get("name")
        if isinstance(name, str):
            if name in feed_names:
                first = main.at(("feeds", feed_names[name], "name"))[0]
                problems.append(
                    main.problem(
                        ("feeds", i, "name"),
                        f"feeds[{i}].name: duplicate feed name {name!r} (first at line {first})",
                    )
                )
            else:
                feed_names[name] = i
        tags.update(t for t in _list(feed.get("tags")) if isinstance(t, str))
    channels = data.get("channels")
    channel_names = sorted(channels) if isinstance(channels, dict) else None

    rule_names: dict[str, tuple[Document, int]] = {}
    for doc, rules in rule_docs:
        for i, rule in enumerate(rules):
            if not isinstance(rule, dict):
                continue
            name = rule.get("name")
            if isinstance(name, str):
                if name in rule_names:
                    first_doc, first_i = rule_names[name]
                    line = first_doc.at(("rules", first_i, "name"))[0]
                    problems.append(
                        doc.problem(
                            ("rules", i, "name"),
                            f"rules[{i}].name: duplicate rule name {name!r} "
                            f"(first at {first_doc.name}:{line})",
                        )
                    )
                else:
                    rule_names[name] = (doc, i)
            refs = [
                ("channels", ref, _channel_ref(ref, channel_names))
                for ref in _list(rule.get("channels"))
            ]
            refs += [
                ("feeds", ref, _feed_ref(ref, feed_names, tags)) for ref in _list(rule.get("feeds"))
            ]
            seen: dict[str, int] = {}
            for key, _, message in refs:
                j = seen[key] = seen.get(key, -1) + 1
                if message:
                    path = ("rules", i, key, j)
                    where = _rule_key(i, name, f"{key}[{j}]")
                    problems.append(doc.problem(path, f"{where}: {message}"))
    return problems


def _rule_key(i: int, name: Any, key: str) -> str:
    """``rules[3].query (rule 'evin')``: the path in the file, and the rule's name to search for
    in logs and in `rules test --rule` (a rule file's index alone does not say which rule)."""
    path = f"rules[{i}].{key}"
    return f"{path} (rule {name!r})" if isinstance(name, str) else path


def _channel_ref(ref: Any, defined: list[str] | None) -> str | None:
    if not isinstance(ref, str) or defined is None or ref in defined:
        return None  # a wrong type is the shape check's to report
    return f"unknown channel {ref!r} (defined: {', '.join(defined) or 'none'})"


def _feed_ref(ref: Any, feeds: Mapping[str, int], tags: set[str]) -> str | None:
    if not isinstance(ref, str):
        return None
    if ref.startswith("tag:"):
        return None if ref[4:] in tags else f"no feed has tag {ref[4:]!r}"
    return None if ref in feeds else f"unknown feed {ref!r} (a feed name or tag:x)"


@dataclass(frozen=True, slots=True)
class _QueryError:
    rule: str
    line: int  # 1-based, within the query
    column: int  # 1-based, within the query
    message: str


def _query_errors(
    rules: Sequence[model.Rule], aliases: Mapping[str, Sequence[str]]
) -> list[_QueryError]:
    """Compile the rules with monitor.rules; the errors of every broken rule.

    The one place that knows monitor.rules' error types: the rest of this module sees positions
    within a query and a message.
    """
    try:
        compile_rules(rules, aliases)
    except RuleErrors as exc:
        return [
            _QueryError(e.rule, e.line, e.column, _with_hint(e.message, e.hint)) for e in exc.errors
        ]
    return []


def _with_hint(message: str, hint: str | None) -> str:
    return f"{message} ({hint})" if hint else message


def _compile(rule_docs: Sequence[tuple[Document, list[Any]]], aliases: Any) -> list[ConfigProblem]:
    """Compile every rule whose name and query are strings; errors placed inside the query."""
    usable_aliases = {
        k: [t for t in v if isinstance(t, str)]
        for k, v in (aliases.items() if isinstance(aliases, dict) else ())
        if isinstance(k, str) and isinstance(v, list)
    }
    where: dict[str, tuple[Document, int, str]] = {}
    rules: list[model.Rule] = []
    for doc, raw in rule_docs:
        for i, rule in enumerate(raw):
            if not isinstance(rule, dict):
                continue
            name, query = rule.get("name"), rule.get("query")
            if isinstance(name, str) and isinstance(query, str) and query and name not in where:
                where[name] = (doc, i, query)
                rules.append(model.Rule(name=name, query=query))
    problems = []
    for error in _query_errors(rules, usable_aliases):
        doc, i, query = where[error.rule]
        lines = query.split("\n")
        offset = sum(len(ln) + 1 for ln in lines[: error.line - 1]) + error.column - 1
        problems.append(
            doc.problem(
                ("rules", i, "query"),
                f"{_rule_key(i, error.rule, 'query')}: {error.message}",
                offset=offset,
            )
        )
    return problems


_SQLITE = re.compile(r"(sqlite(?:\+\w+)?:///)([^?]*)(.*)", re.DOTALL)


def _resolve_sqlite(url: str, base: Path) -> str:
    """Make a relative SQLite path absolute against `base` (the config file's directory)."""
    match = _SQLITE.fullmatch(url)
    if match is None:
        return url
    prefix, path, query = match.groups()
    if not path or path == ":memory:" or path.startswith("file:") or os.path.isabs(path):
        return url
    return prefix + os.path.normpath(base / path) + query
