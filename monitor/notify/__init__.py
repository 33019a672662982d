"""The notify room: alert channels over apprise, the alert text, and the outbox worker.

    Notifier(channels).send(delivery)   one alert through one channel -> SendOutcome
    message_id / digest_message_id      an alert's / a digest's stable email Message-ID
    render(delivery)                    the alert's (title, body), plain text
    render_for(channel, delivery)       the alert in the channel's format -> Rendered
    validate_channel(channel)           URLs, format, time zone and template, for `check`
    OutboxWorker(store, notifier).drain()  claim due deliveries, send, mark sent/failed

Imports only the standard library, apprise (and requests, the HTTP client its services use),
Jinja2 and ``monitor.model``; the store is reached through the ``OutboxStore`` protocol
defined here, never imported.
"""

from .channels import (
    CONSOLE_URL,
    Notifier,
    SendOutcome,
    digest_message_id,
    mask_url,
    message_id,
    validate_channel,
    validate_channel_url,
)
from .outbox import DrainReport, OutboxStore, OutboxWorker, next_attempt
from .render import Rendered, TemplateProblem, render, render_for

__all__ = [
    "CONSOLE_URL",
    "DrainReport",
    "Notifier",
    "OutboxStore",
    "OutboxWorker",
    "Rendered",
    "SendOutcome",
    "TemplateProblem",
    "digest_message_id",
    "mask_url",
    "message_id",
    "next_attempt",
    "render",
    "render_for",
    "validate_channel",
    "validate_channel_url",
]
