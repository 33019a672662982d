"""One update of the `reader` library over a list of feed URLs; prints a JSON line of timings.

Run by bench/speed.py inside a separate virtual environment that holds `reader` (never
newsmon's), once per phase, against one database that persists between phases:

    /tmp/reader-venv/bin/python bench/peer_reader.py --db /tmp/x/reader.db --urls urls.txt --add

`--add` (the cold phase) creates the database and adds every feed; every phase then calls
`update_feeds(workers=N, scheduled=False)`: all feeds now, whatever their schedule, as
`newsmon poll --once` does (with the default `scheduled=True` a second update within the hour
would skip every feed and measure nothing). Only the standard library and `reader` are imported.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="reader's SQLite database")
    parser.add_argument("--urls", required=True, help="a file with one feed URL a line")
    parser.add_argument("--add", action="store_true", help="add every feed first (cold)")
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()

    import reader  # imported here so its cost is reported apart from the update's

    imported = time.perf_counter()
    urls = Path(args.urls).read_text().split()
    db = reader.make_reader(args.db)
    if args.add:
        for url in urls:
            db.add_feed(url, exist_ok=True)
    ready = time.perf_counter()
    before = db.get_entry_counts().total
    db.update_feeds(workers=args.workers, scheduled=False)
    updated = time.perf_counter()
    after = db.get_entry_counts().total
    broken = db.get_feed_counts(broken=True).total
    db.close()
    print(
        json.dumps(
            {
                "reader": reader.__version__,
                "import_s": imported - started,
                "setup_s": ready - imported,
                "update_s": updated - ready,
                "new_entries": after - before,
                "entries": after,
                "broken_feeds": broken,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
