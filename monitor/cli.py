"""The `newsmon` command (DESIGN.md, "Commands").

Exit codes: 0 success; 1 a problem the user must fix (config errors, a failed send-test);
2 wrong usage (argparse). Every command takes `--config PATH` (default `$NEWSMON_CONFIG` or
`config/newsmon.yaml`), before or after the command name.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from monitor import __version__
from monitor.config import ConfigError, Settings, load_config, parse_duration
from monitor.configschema import schema_text, write_starter
from monitor.logs import configure_logging

DEFAULT_CONFIG = "config/newsmon.yaml"
log = logging.getLogger("newsmon")


def _default_config() -> str:
    return os.environ.get("NEWSMON_CONFIG", DEFAULT_CONFIG)


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        help=f"config file (default: $NEWSMON_CONFIG or {DEFAULT_CONFIG})",
    )
    common.add_argument(
        "--log-level",
        default=argparse.SUPPRESS,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="override the config's log_level",
    )
    parser = argparse.ArgumentParser(
        prog="newsmon",
        description="News-monitoring alert daemon: polls feeds, matches watch rules, alerts once.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"newsmon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = sub.add_parser("init", parents=[common], help="write a starter config")
    init.add_argument("dir", nargs="?", default="config", help="where to write newsmon.yaml")
    sub.add_parser("check", parents=[common], help="validate config and rules")
    schema = sub.add_parser("schema", parents=[common], help="print the config's JSON Schema")
    schema.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead")
    sub.add_parser("run", parents=[common], help="run the daemon until SIGTERM/SIGINT")
    poll = sub.add_parser("poll", parents=[common], help="poll feeds")
    poll.add_argument("--once", action="store_true", required=True, help="poll every feed now")

    rules = sub.add_parser("rules", parents=[common], help="work with watch rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND")
    test = rules_sub.add_parser("test", parents=[common], help="show what rules would match")
    test.add_argument("--rule", help="only this rule")
    test.add_argument(
        "--since",
        type=_duration,
        default="30d",
        help="stored items fetched this recently, all of them (default 30d)",
    )
    test.add_argument("source", nargs="?", help="a feed file or URL instead of the stored corpus")
    test.add_argument(
        "--feed",
        metavar="NAME",
        help="test the feed file or URL as this configured feed, so that rules with feeds: "
        "see it (default: the configured feed with that URL, if any)",
    )
    test.add_argument(
        "--full-text",
        action="store_true",
        help="fetch each item's article page, show the main text rules would see, match it",
    )
    test.add_argument(
        "--explain",
        metavar="ITEM",
        help="the item's GUID or URL (any stored item, or one of the feed's): show why it did "
        "or did not match each clause of each rule",
    )

    sub.add_parser("feeds", parents=[common], help="feed health")
    alerts = sub.add_parser("alerts", parents=[common], help="alert log with delivery status")
    alerts.add_argument("--limit", type=int, default=50)
    alerts_sub = alerts.add_subparsers(dest="alerts_command", metavar="SUBCOMMAND")
    retry = alerts_sub.add_parser("retry", parents=[common], help="send dead alerts again")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the alert's id, as `newsmon alerts` shows")
    which.add_argument("--dead", action="store_true", help="every dead alert")
    stories = sub.add_parser("stories", parents=[common], help="story groups")
    stories.add_argument("--limit", type=int, default=50)
    send = sub.add_parser("send-test", parents=[common], help="send a test alert")
    send.add_argument("channel")
    return parser


def _duration(text: str) -> timedelta:
    """`parse_duration` for argparse: a bad value is a usage error (exit 2) with its reason."""
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _load(path: str) -> Settings | None:
    try:
        return load_config(path)
    except ConfigError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return None
    except FileNotFoundError:
        print(f"{path}: no such config file (try `newsmon init`)", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    config_path: str = getattr(args, "config", None) or _default_config()
    if args.command == "rules" and args.feed is not None and args.source is None:
        print("newsmon rules test: --feed needs a FEED_FILE_OR_URL", file=sys.stderr)
        return 2

    if args.command == "init":
        try:
            written = write_starter(Path(args.dir))
        except FileExistsError as error:
            print(f"{error.filename or error}: exists, not overwritten", file=sys.stderr)
            return 1
        print(
            f"wrote {written} and its JSON Schema beside it; edit it, then: "
            f"newsmon --config {written} check"
        )
        return 0

    if args.command == "schema":
        return _schema(args.output)

    settings = _load(config_path)
    if settings is None:
        return 1
    # One line per event, text or JSON; hostile feed text is defused and URLs masked in them.
    configure_logging(getattr(args, "log_level", None) or settings.log_level, settings.log_format)

    if args.command == "check":
        return _check(settings, config_path)
    # The commands below need the store and the network: imported here so that `check` and
    # `init` stay fast and work on a machine missing optional drivers.
    from monitor import commands

    if args.command == "run":
        return asyncio.run(_run(settings, config_path))
    if args.command == "poll":
        return asyncio.run(commands.poll_once(settings))
    if args.command == "rules":
        return asyncio.run(
            commands.rules_test(
                settings,
                args.rule,
                args.since,
                args.source,
                explain=args.explain,
                full_text=args.full_text,
                feed=args.feed,
            )
        )
    if args.command == "feeds":
        return asyncio.run(commands.feeds(settings))
    if args.command == "alerts":
        if args.alerts_command == "retry":
            return asyncio.run(commands.alerts_retry(settings, args.id, dead=args.dead))
        return asyncio.run(commands.alerts(settings, args.limit))
    if args.command == "stories":
        return asyncio.run(commands.stories(settings, args.limit))
    if args.command == "send-test":
        return asyncio.run(commands.send_test(settings, args.channel))
    raise AssertionError(f"unhandled command {args.command}")


def _schema(output: str | None) -> int:
    text = schema_text()
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"{output}: cannot write: {error.strerror or error}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    return 0


def _check(settings: Settings, path: str) -> int:
    from monitor.notify import validate_channel

    bad = 0
    for name, channel in settings.channel_values().items():
        # URLs, format, time zone and template (rendered once per format); the reason is masked.
        reason = validate_channel(channel)
        if reason is not None:
            bad += 1
            print(f"{path}: channels.{name}: {reason}", file=sys.stderr)
    if bad:
        return 1
    print(
        f"{path}: ok: {len(settings.feeds)} feeds, {len(settings.rule_values())} rules, "
        f"{len(settings.channels)} channels"
    )
    return 0


async def _run(settings: Settings, config_path: str) -> int:
    from monitor.scheduler import Daemon
    from monitor.startup import open_when_ready
    from monitor.systemd import SystemdNotify

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # A database that is not up yet is waited for, not a crash (and a systemd restart loop).
    store = await open_when_ready(settings.database, stop, notify=SystemdNotify.from_env())
    if store is None:
        log.info("stopped before the database answered")
        return 0
    async with Daemon(settings, store=store) as daemon:
        await daemon.run(stop, config_path=config_path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
