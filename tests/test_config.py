"""Config loading: every broken config gives a message at the right file:line:column, every
good one gives the values the rest of newsmon expects."""

from __future__ import annotations

import textwrap
from datetime import time, timedelta
from pathlib import Path

import pytest

from monitor import model
from monitor.config import (
    ConfigError,
    ConfigProblem,
    Settings,
    load_config,
    load_config_text,
    parse_duration,
    parse_size,
)
from monitor.configschema import starter_config, write_starter
from monitor.configyaml import read_document

REPO = Path(__file__).resolve().parent.parent

# A valid base that broken rows extend, so each row fails for one reason only.
BASE = """\
channels:
  console:
    url: console://
feeds:
  - name: bbc
    url: https://feeds.bbci.co.uk/news/rss.xml
    tags: [world]
"""


def problems_of(text: str, **kwargs: object) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, name="t.yaml", **kwargs)  # type: ignore[arg-type]
    return caught.value.problems


# (id, yaml, fragment of the message, line, column): 1-based, as an editor shows them.
BROKEN = [
    ("bad-indentation", "feeds:\n  - name: a\n   url: x\n", "YAML syntax error", 3, 4),
    ("unclosed-quote", "database: 'abc\nlog_level: INFO\n", "quoted scalar at 1:11", 3, 1),
    ("tab", "http:\n\ttimeout: 5s\n", "'\\t'", 2, 1),
    ("unknown-top-key", BASE + "colour: red\n", "colour: unknown key (allowed: database,", 8, 1),
    ("unknown-nested-key", "http:\n  tiemout: 5s\n", "http.tiemout: unknown key", 2, 3),
    (
        "bad-duration",
        BASE + "    interval: soon\n",
        "feeds[0].interval: invalid duration 'soon'",
        8,
        15,
    ),
    ("bad-size", "http:\n  max_body: 15 MiBs\n", "http.max_body: invalid size '15 MiBs'", 2, 13),
    (
        "missing-env-var",
        'channels:\n  s:\n    url: "slack://${SLACK_TOKEN}/#desk"\n',
        "channels.s.url: missing environment variable SLACK_TOKEN",
        3,
        19,
    ),
    (
        "duplicate-feed",
        BASE + "  - name: bbc\n    url: https://example.org/rss\n",
        "feeds[1].name: duplicate feed name 'bbc' (first at line 5)",
        8,
        11,
    ),
    (
        "feed-url-not-http",
        "feeds:\n  - name: a\n    url: ftp://example.org/feed\n",
        "feeds[0].url: feed url must start with http:// or https:// (scheme: 'ftp')",
        3,
        10,
    ),
    (
        "unknown-channel",
        BASE + "rules:\n  - name: r\n    query: iran\n    channels: [console, slak]\n",
        "rules[0].channels[1] (rule 'r'): unknown channel 'slak' (defined: console)",
        11,
        25,
    ),
    (
        "unknown-feed",
        BASE + "rules:\n  - name: r\n    query: iran\n    feeds: [tag:world, bcc]\n",
        "rules[0].feeds[1] (rule 'r'): unknown feed 'bcc'",
        11,
        24,
    ),
    (
        "unknown-tag",
        BASE + "rules:\n  - name: r\n    query: iran\n    feeds: [tag:wrld]\n",
        "rules[0].feeds[0] (rule 'r'): no feed has tag 'wrld'",
        11,
        13,
    ),
    (
        "broken-query-plain",
        BASE + "rules:\n  - name: r\n    query: iran AND ) x\n",
        "rules[0].query (rule 'r'): ",
        10,
        17,  # the AND, 5 characters into a query that starts at column 12
    ),
    (
        "broken-query-single-quoted",
        BASE + "rules:\n  - name: r\n    query: 'it''s AND ) x'\n",
        "rules[0].query (rule 'r'): ",
        10,
        19,  # '' is one character of the value but two of the file
    ),
    (
        "broken-query-double-quoted",
        BASE + 'rules:\n  - name: r\n    query: "iran \\"a\\" ) x"\n',
        "rules[0].query (rule 'r'): unmatched ')'",
        10,
        24,
    ),
    (
        "broken-query-literal-block",
        BASE + "rules:\n  - name: r\n    query: |\n      iran AND\n      (x OR y))\n",
        "rules[0].query (rule 'r'): unmatched ')'",
        12,
        15,
    ),
    (
        "broken-query-folded-block",
        BASE + "rules:\n  - name: r\n    query: >\n      iran AND\n      (x OR y))\n",
        "rules[0].query (rule 'r'): unmatched ')'",
        12,
        15,
    ),
    (
        "unknown-alias",
        BASE + "aliases:\n  IRAN: [Iran]\nrules:\n  - name: r\n    query: 'iran AND @NOPE'\n",
        "rules[0].query (rule 'r'): unknown alias @NOPE",
        12,
        22,
    ),
    (
        "query-nested-too-deep",
        BASE + "rules:\n  - name: r\n    query: '" + "(" * 70 + "x" + ")" * 70 + "'\n",
        "rules[0].query (rule 'r'): the query nests more than 64 levels deep",
        10,
        13 + 64,  # the 65th parenthesis, inside a quoted value that starts at column 12
    ),
    (
        "wrong-type",
        BASE + "    interval: [1, 2]\n",
        "feeds[0].interval: expected a duration such as 90s, 5m, 24h, 7d, got a list",
        8,
        15,
    ),
    (
        "bad-timezone",
        "channels:\n  c:\n    url: console://\n    timezone: Mars/Olympus\n",
        "channels.c.timezone: unknown time zone 'Mars/Olympus'",
        4,
        15,
    ),
    (
        "bad-cron",
        "channels:\n  c:\n    url: console://\n    digest: '0 25 * * *'\n",
        "channels.c.digest: '25' is not valid in the hour field",
        4,
        13,
    ),
    (
        "bad-cidr",
        "http:\n  allow_networks: [10.0.0.0/8, 10.0.0.1/8]\n",
        "http.allow_networks[1]: invalid network '10.0.0.1/8'",
        2,
        32,
    ),
    (
        "missing-feed-url",
        "feeds:\n  - name: a\n    interval: 5m\n",
        "feeds[0].url: missing required key 'url'",
        2,
        5,  # the mapping that lacks the key
    ),
    (
        "yaml-boolean-word",
        "feeds:\n  - name: no\n    url: https://example.org/\n",
        "feeds[0].name: expected a string, got bool (quote it",
        2,
        11,
    ),
    (
        "empty-required-value",
        "feeds:\n  - name: a\n    url:\n",
        "feeds[0].url: expected a string, got nothing",
        3,
        5,  # the key: an empty value has no text to point at
    ),
    ("not-a-mapping", "- a\n- b\n", "the config must be a mapping", 1, 1),
    ("section-wrong-type", "http: 5\n", "http: expected a mapping, got int", 1, 7),
    ("duplicate-key", "log_level: INFO\nlog_level: DEBUG\n", "duplicate key 'log_level'", 2, 1),
    (
        "bad-priority",
        BASE + "rules:\n  - {name: r, query: x, priority: urgent}\n",
        "priority",
        9,
        35,
    ),
    (
        "duplicate-rule",
        BASE + "rules:\n  - {name: r, query: x}\n  - {name: r, query: y}\n",
        "rules[1].name: duplicate rule name 'r' (first at t.yaml:9)",
        10,
        12,
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment", "line", "column"),
    [row[1:] for row in BROKEN],
    ids=[row[0] for row in BROKEN],
)
def test_broken_config_is_reported_at_its_position(
    text: str, fragment: str, line: int, column: int
) -> None:
    problems = problems_of(text, env={})
    assert len(problems) == 1, problems
    problem = problems[0]
    assert fragment in problem.message
    assert (problem.file, problem.line, problem.column) == ("t.yaml", line, column), str(problem)
    assert str(problem).startswith(f"t.yaml:{line}:{column}: ")


def test_every_problem_is_reported() -> None:
    text = BASE + (
        "    interval: soon\n"  # 8
        "http:\n"
        "  tiemout: 5s\n"  # 10
        "rules:\n"
        "  - name: r\n"
        "    query: iran\n"
        "    channels: [nowhere]\n"  # 14
    )
    problems = problems_of(text, env={})
    assert [(p.line, p.message.split(":")[0]) for p in problems] == [
        (8, "feeds[0].interval"),
        (10, "http.tiemout"),
        (14, "rules[0].channels[0] (rule 'r')"),
    ]


def test_error_message_format() -> None:
    problem = ConfigProblem("config/newsmon.yaml", 12, 5, "feeds[2].interval: invalid duration")
    assert str(problem) == "config/newsmon.yaml:12:5: feeds[2].interval: invalid duration"
    assert str(ConfigError([problem])) == str(problem)


def test_missing_variable_never_echoes_the_value_around_it() -> None:
    text = 'channels:\n  s:\n    url: "slack://xoxb-SECRET-${MISSING}/#desk"\n'
    (problem,) = problems_of(text, env={"OTHER": "x"})
    assert "MISSING" in problem.message
    assert "SECRET" not in str(problem)


def test_invalid_variable_reference() -> None:
    (problem,) = problems_of("log_level: ${not a name}\n", env={})
    assert "'${' must be followed by NAME}" in problem.message
    assert (problem.line, problem.column) == (1, 12)


# --- rule files -----------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_rule_files_are_loaded_from_globs_relative_to_the_config(tmp_path: Path) -> None:
    config = write(
        tmp_path / "conf" / "newsmon.yaml", BASE + "rule_files: [rules/*.yaml, none/*.yml]\n"
    )
    write(tmp_path / "conf" / "rules" / "b.yaml", "rules:\n  - name: b\n    query: beta\n")
    write(
        tmp_path / "conf" / "rules" / "a.yaml",
        "# first\nrules:\n  - name: a\n    query: alpha\n    channels: [console]\n",
    )
    settings = load_config(config, env={})
    rules = settings.rule_values()
    assert [r.name for r in rules] == ["a", "b"]
    assert rules[0].channels == ("console",)
    assert rules[0].origin == f"{tmp_path / 'conf' / 'rules' / 'a.yaml'}:3"


def test_rule_file_errors_name_that_file(tmp_path: Path) -> None:
    config = write(tmp_path / "newsmon.yaml", BASE + "rule_files: ['rules/*.yaml']\n")
    write(
        tmp_path / "rules" / "desk.yaml",
        "rules:\n  - name: a\n    query: alpha\n    channels: [slack]\n  - name: b\n    qery: x\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    shown = str(tmp_path / "rules" / "desk.yaml")
    assert [(p.file, p.line, p.column) for p in caught.value.problems] == [
        (shown, 4, 16),  # unknown channel
        (shown, 5, 5),  # missing query: the rule's mapping
        (shown, 6, 5),  # unknown key qery
    ]


def test_query_errors_name_the_rule_and_its_place(tmp_path: Path) -> None:
    config = write(tmp_path / "newsmon.yaml", BASE + "rule_files: ['rules/*.yaml']\n")
    write(
        tmp_path / "rules" / "desk.yaml",
        "rules:\n  - name: evin\n    query: evin\n"
        "  - name: treaty-watch\n    query: 'treaty NEAR'\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    (problem,) = caught.value.problems
    assert (Path(problem.file).name, problem.line, problem.column) == ("desk.yaml", 5, 20)
    assert problem.message.startswith("rules[1].query (rule 'treaty-watch'): NEAR without")


def test_rule_file_syntax_error_and_main_errors_together(tmp_path: Path) -> None:
    config = write(tmp_path / "newsmon.yaml", "log_level: LOUD\nrule_files: [r.yaml]\n")
    write(tmp_path / "r.yaml", "rules:\n  - name: 'a\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    files = [Path(p.file).name for p in caught.value.problems]
    assert files == ["newsmon.yaml", "r.yaml"]


def test_rule_names_are_unique_across_files(tmp_path: Path) -> None:
    text = BASE + "rules:\n  - {name: a, query: x}\nrule_files: [more.yaml]\n"
    config = write(tmp_path / "newsmon.yaml", text)
    write(tmp_path / "more.yaml", "rules:\n  - {name: a, query: y}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    (problem,) = caught.value.problems
    assert problem.file.endswith("more.yaml")
    assert "duplicate rule name 'a'" in problem.message


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d 2h 3m 4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("1.5h", timedelta(minutes=90)),
        ("45", timedelta(seconds=45)),
        (45, timedelta(seconds=45)),
        (0.5, timedelta(milliseconds=500)),
    ],
)
def test_parse_duration(text: str | int | float, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "5M", "5 min", "30m1h", "-5s", "5mm", True, [1]])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15MB", 15_000_000),
        ("512KB", 512_000),
        ("512kb", 512_000),
        ("1GiB", 2**30),
        ("2 MiB", 2 * 2**20),
        ("1.5MB", 1_500_000),
        ("100B", 100),
        ("100", 100),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "big", "15 MiBs", "1.5B", "-1", -1, True, 1.5])
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)  # type: ignore[arg-type]


def test_defaults() -> None:
    settings = load_config_text("", env={}, base_dir=Path("/srv/newsmon"))
    assert settings.database == "sqlite:////srv/newsmon/var/newsmon.db"
    assert settings.polling.interval == timedelta(minutes=10)
    assert settings.polling.backlog_window == timedelta(hours=24)
    assert settings.http.timeout == timedelta(seconds=30)
    assert settings.http.max_body == 15_000_000
    assert (settings.http.concurrency, settings.http.per_host) == (100, 2)
    assert settings.http.allow_private_networks is False
    assert settings.log_level == "INFO"
    assert settings.feeds == [] and settings.rules == [] and settings.channels == {}


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("sqlite:///var/n.db", "sqlite:////srv/conf/var/n.db"),
        ("sqlite:///../var/n.db", "sqlite:////srv/var/n.db"),
        ("sqlite+aiosqlite:///n.db?timeout=5", "sqlite+aiosqlite:////srv/conf/n.db?timeout=5"),
        ("sqlite:////abs/n.db", "sqlite:////abs/n.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite://", "sqlite://"),
        ("postgresql+asyncpg://u@db/newsmon", "postgresql+asyncpg://u@db/newsmon"),
    ],
)
def test_relative_sqlite_paths_are_relative_to_the_config_directory(
    database: str, expected: str
) -> None:
    settings = load_config_text(f"database: '{database}'\n", env={}, base_dir=Path("/srv/conf"))
    assert settings.database == expected


def test_empty_sections_mean_their_defaults() -> None:
    # What a config looks like after the author commented out every channel and rule.
    text = (
        "channels:\nrules:\nhttp:\n  timeout:\nfeeds:\n  - name: a\n    url: https://a.example/\n"
    )
    settings = load_config_text(text + "    interval:\n", env={})
    assert settings.channels == {} and settings.rules == []
    assert settings.http.timeout == timedelta(seconds=30)
    assert settings.feed_values()[0].interval == timedelta(minutes=10)


def test_variable_substitution() -> None:
    text = (
        "database: postgresql+asyncpg://newsmon:${PGPASSWORD}@db/newsmon\n"
        "http:\n  per_host: ${PER_HOST}\n  user_agent: 'costs $${HOME} $5'\n"
        "channels:\n  s:\n    url: ['slack://${SLACK_TOKEN}/#desk', console://]\n"
    )
    env = {"PGPASSWORD": "p4ss", "PER_HOST": "3", "SLACK_TOKEN": "a/b/c", "HOME": "/root"}
    settings = load_config_text(text, env=env)
    assert settings.database == "postgresql+asyncpg://newsmon:p4ss@db/newsmon"
    assert settings.http.per_host == 3
    assert settings.http.user_agent == "costs ${HOME} $5"
    assert settings.channel_values()["s"].urls == ("slack://a/b/c/#desk", "console://")


def test_conversions_to_model_values() -> None:
    text = BASE + (
        "  - name: spare\n    url: http://example.org/feed\n    interval: 1h\n"
        "    enabled: false\n    full_text: true\n"
        "polling:\n  interval: 2m\n"
        "http:\n  timeout: 1m\n  max_body: 1MiB\n  allow_private_networks: true\n"
        "rules:\n  - name: r\n    query: iran\n    feeds: [tag:world]\n    priority: high\n"
    )
    settings = load_config_text(text, name="c.yaml", env={})
    assert settings.feed_values() == [
        model.Feed(
            "bbc", "https://feeds.bbci.co.uk/news/rss.xml", timedelta(minutes=2), tags=("world",)
        ),
        model.Feed(
            "spare", "http://example.org/feed", timedelta(hours=1), full_text=True, enabled=False
        ),
    ]
    assert settings.rule_values() == [
        model.Rule("r", "iran", feeds=("tag:world",), priority="high", origin="c.yaml:20")
    ]
    assert settings.channel_values() == {"console": model.Channel("console", ("console://",))}
    assert settings.http_policy() == model.HttpPolicy(
        user_agent=settings.http.user_agent,
        timeout=60.0,
        max_body=2**20,
        concurrency=100,
        per_host=2,
        allow_private_networks=True,
    )
    assert settings.config_path == Path("c.yaml")


def test_settings_is_frozen_and_rejects_unknown_keys() -> None:
    settings = Settings.model_validate({"log_level": "debug"})
    assert settings.log_level == "DEBUG"
    with pytest.raises(ValueError, match="frozen"):
        settings.log_level = "INFO"  # type: ignore[misc]
    with pytest.raises(ValueError, match="config_path"):
        Settings.model_validate({"config_path": "/etc/x.yaml"})
    assert "config_path" not in Settings.model_json_schema()["properties"]


# --- the shipped configs --------------------------------------------------------------------


def test_repository_config_loads_without_environment() -> None:
    settings = load_config(REPO / "config" / "newsmon.yaml", env={})
    assert len(settings.feeds) >= 12
    assert all(f.url.startswith("https://") for f in settings.feeds)
    names = {r.name for r in settings.rule_values()}
    assert {"iran-russia-treaty-ratification", "evin-prison-news"} <= names
    assert {"IRAN", "RUSSIA", "EVIN"} <= set(settings.aliases)
    assert "ایران" in settings.aliases["IRAN"]
    assert settings.channel_values()["console"].urls == ("console://",)
    assert settings.database == f"sqlite:///{REPO / 'var' / 'newsmon.db'}"


def test_starter_config_loads_and_is_written_once(tmp_path: Path) -> None:
    assert "newsmon init" in starter_config()
    written = write_starter(tmp_path / "new")
    assert written == tmp_path / "new" / "newsmon.yaml"
    assert written.read_text(encoding="utf-8") == starter_config()
    settings = load_config(written, env={})
    assert settings.feeds and settings.rules
    assert settings.database == f"sqlite:///{tmp_path / 'new' / 'var' / 'newsmon.db'}"

    written.write_text("# mine\n", encoding="utf-8")
    with pytest.raises(FileExistsError):
        write_starter(tmp_path / "new")
    assert written.read_text(encoding="utf-8") == "# mine\n"


def test_channel_delivery_settings_become_model_values(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "channels:\n  desk:\n    url: console://\n    timezone: Asia/Tehran\n"
        "    quiet_hours: '22:30-07:00'\n    max_per_hour: 30\n    digest: '0 8 * * *'\n"
        "    format: markdown\n    template: templates/desk.md.j2\n"
        "feeds:\n  - name: f\n    url: https://f.example/feed\n    expect_update: 6h\n"
        "retention: 90d\nweb: {listen: '127.0.0.1:9999'}\nlog_format: json\n"
    )
    settings = load_config(config)
    desk = settings.channel_values()["desk"]
    assert desk.quiet_hours == (time(22, 30), time(7, 0))
    assert (desk.timezone, desk.max_per_hour, desk.digest, desk.format) == (
        "Asia/Tehran",
        30,
        "0 8 * * *",
        "markdown",
    )
    assert desk.template == str(tmp_path / "templates" / "desk.md.j2")
    assert settings.feed_values()[0].expect_update == timedelta(hours=6)
    assert settings.retention == timedelta(days=90) and settings.log_format == "json"


@pytest.mark.parametrize("hours", ["22-07", "25:00-07:00", "22:00-22:00", "22:00"])
def test_bad_quiet_hours_are_refused_at_their_position(hours: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config_text(f"channels:\n  desk:\n    url: console://\n    quiet_hours: '{hours}'\n")
    (problem,) = error.value.problems
    assert (problem.line, problem.column) == (4, 18) and "quiet" in problem.message


def test_the_fast_yaml_parser_reads_a_valid_config_as_pyyaml_does() -> None:
    """libyaml reads valid configs (start-up); PyYAML's parser places problems. Same values,
    same positions, wherever a valid document can put them."""
    text = (
        starter_config()
        + 'more_aliases:\n  IRAN: [Iran, ایران, "Islamic Republic"]\n'
        + "x: &a {k: v}\ny:\n  <<: *a\n  folded: >\n    two\n    lines\n  literal: |\n    keep\n"
    )
    slow = read_document(text, "c.yaml", {}, fast=False)
    fast = read_document(text, "c.yaml", {}, fast=True)
    assert fast.problems == slow.problems == []
    assert fast.data == slow.data
    for table in ("values", "keys"):
        ours, theirs = getattr(fast, table), getattr(slow, table)
        assert ours.keys() == theirs.keys()
        for path, node in theirs.items():
            assert fast.at(path, key=table == "keys") == slow.at(path, key=table == "keys"), path
            assert (ours[path].start_mark.index, ours[path].end_mark.index) == (
                node.start_mark.index,
                node.end_mark.index,
            ), path
