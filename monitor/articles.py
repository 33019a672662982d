"""Article pages for feeds with `full_text: true`: fetched, extracted, attached to the item.

The fetch goes through the daemon's `Fetcher` (its limits, politeness per host and address
guard apply to pages as to feeds); extraction runs in the bounded worker processes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import replace

from monitor.extract import extract_article
from monitor.fetch import ACCEPT_PAGE, Fetcher
from monitor.model import Item
from monitor.workers import WorkerError, WorkerPool

log = logging.getLogger("newsmon")


async def with_article_text(
    fetcher: Fetcher, item: Item, workers: WorkerPool | None = None
) -> Item:
    """`item` with the main text of its article page, or with `text_problem` saying why not.

    Extraction (tens of milliseconds of CPU) runs in `workers` (the daemon's bounded worker
    processes, so a hostile page cannot hang or exhaust the daemon), or in a thread when None.
    Never raises for a page's failure: a page that fails leaves the item with its feed text.
    """
    if not item.url:
        return replace(item, text_problem="no link to an article page")
    result = await fetcher.fetch(item.url, accept=ACCEPT_PAGE)
    if result.body is None:
        problem = result.error or f"HTTP {result.status}"
        log.warning("article fetch failed feed=%s url=%s error=%s", item.feed, item.url, problem)
        return replace(item, text_problem=problem)
    job = functools.partial(
        extract_article, result.body, url=result.final_url, headers=dict(result.headers)
    )
    try:
        article = await (workers.run(job) if workers else asyncio.to_thread(job))
    except WorkerError as exc:
        log.warning("article extraction failed feed=%s url=%s error=%s", item.feed, item.url, exc)
        return replace(item, text_problem=str(exc))
    if not article.text:
        problem = article.problem or "no main text found"
        log.warning("article text missing feed=%s url=%s problem=%s", item.feed, item.url, problem)
        return replace(item, text_problem=problem)
    # The feed's own title, author and date stand; the page's fill what the feed left empty,
    # and are kept as they are in `page_*`.
    return replace(
        item,
        text=article.text,
        text_problem=article.problem,
        page_title=article.title or "",
        page_author=article.author or "",
        page_published=article.published,
        title=item.title or article.title or "",
        author=item.author or article.author or "",
        published=item.published or article.published,
    )
