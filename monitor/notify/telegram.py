"""Telegram's plain-text resend: the alert as text, with no ``parse_mode`` at all.

When Telegram refuses a formatted alert (HTTP 400, "can't parse entities"), the words matter
more than the bold, so the alert goes once more as plain text. apprise's Telegram service
always sets a ``parse_mode`` (HTML for text, which it escapes and wraps the title in
``<b>``), so that resend would still be parsed and could be refused again for the same
reason. ``plain_telegram(url)`` builds the same bot and chats with a send that posts the
text alone: nothing in it is markup, and a 400 on it is about the message or the chat, not
the formatting (the ``Notifier`` makes that permanent).
"""

from __future__ import annotations

import json
from typing import Any

import apprise
import requests
from apprise.plugins import url_to_dict
from apprise.plugins.telegram import NotifyTelegram

from .services import asset

__all__ = ["plain_telegram"]


class _PlainTelegram(NotifyTelegram):  # type: ignore[no-untyped-call]  # apprise: untyped
    """apprise's Telegram sending ``sendMessage`` with the text only: no ``parse_mode``, no
    image, no rich template. A text service (``notify_format``), so apprise puts the title
    on the first line of the body, unescaped."""

    notify_format = (apprise.NotifyFormat.TEXT,)  # type: ignore[assignment]  # one, not two

    def send(
        self,
        body: str,
        title: str = "",
        notify_type: Any = None,
        attach: Any = None,
        body_format: Any = None,
        body_passthrough: Any = None,
        **kwargs: Any,
    ) -> bool:
        me: Any = self  # apprise's Telegram attributes and methods carry no types
        if not me.targets and me.detect_owner:
            owner = me.store.get("bot_owner") or me.detect_bot_owner()
            if owner:
                me.targets.append((str(owner), me.topic))
        if not me.targets:
            me.logger.warning("There were not Telegram chat_ids to notify.")
            return False
        url = f"{me.notify_url}{me.bot_token}/sendMessage"
        headers = {"User-Agent": me.app_id, "Content-Type": "application/json"}
        failed = False
        for target in list(me.targets):
            if me.is_delivered(target):
                continue
            chat_id, topic = target
            payload: dict[str, Any] = {
                "chat_id": chat_id,
                "text": body,
                "disable_notification": me.silent,
                "disable_web_page_preview": not me.preview,
            }
            if topic:
                payload["message_thread_id"] = topic
            me.throttle()
            try:
                answer = requests.post(
                    url,
                    data=json.dumps(payload),
                    headers=headers,
                    verify=me.verify_certificate,
                    timeout=me.request_timeout,
                    allow_redirects=me.redirects,
                )
            except requests.RequestException as exc:
                # The exception's text quotes the URL, and with it the bot token: the type only.
                me.logger.warning(
                    "A connection error occurred sending Telegram plain text: %s",
                    type(exc).__name__,
                )
                failed = True
                continue
            if answer.status_code != requests.codes.ok:
                try:
                    said = str(json.loads(answer.content).get("description", "unknown"))
                except (AttributeError, TypeError, ValueError):
                    said = "unknown"
                # "error=<status>." as apprise's services end such a line: outcome() reads it.
                me.logger.warning(
                    "Failed to send Telegram plain text to %s: %s, error=%d.",
                    chat_id,
                    said,
                    answer.status_code,
                )
                failed = True
                continue
            me.logger.info("Sent Telegram plain text.")
            me.mark_delivered(target)
        return not failed


def plain_telegram(url: str) -> Any:
    """An apprise holding the Telegram service of ``url`` that sends plain text; None when
    apprise cannot parse ``url`` as Telegram."""
    try:
        parsed = url_to_dict(url, secure_logging=True)  # type: ignore[no-untyped-call]
        if not parsed:
            return None
        plain = _PlainTelegram(**{**parsed, "asset": asset()})  # type: ignore[no-untyped-call]
    except Exception:  # third-party code: without the resend, a 400 stays a plain failure
        return None
    services = apprise.Apprise(asset=asset())
    services.add(plain)
    return services
