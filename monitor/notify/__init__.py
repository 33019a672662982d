"""The notify room: alert channels over apprise, the alert text, and the outbox worker.

    Notifier(channels).send(delivery)   one alert through one channel -> SendOutcome
    render(delivery)                    the alert's (title, body), plain text
    OutboxWorker(store, notifier).drain()  claim due deliveries, send, mark sent/failed

Imports only the standard library, apprise and ``monitor.model``; the store is reached
through the ``OutboxStore`` protocol defined here, never imported.
"""

from .channels import CONSOLE_URL, Notifier, SendOutcome, mask_url, validate_channel_url
from .outbox import DrainReport, OutboxStore, OutboxWorker, next_attempt
from .render import render

__all__ = [
    "CONSOLE_URL",
    "DrainReport",
    "Notifier",
    "OutboxStore",
    "OutboxWorker",
    "SendOutcome",
    "mask_url",
    "next_attempt",
    "render",
    "validate_channel_url",
]
