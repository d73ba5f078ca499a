"""Buyer notifications to the seller's webhook: the notifications topic is the product; a webhook is optional.

parcelwatch never sends SMS itself. When ``webhook_url`` is set in config/notifications.yaml, each
notification is POSTed there as JSON, with retries and backoff; this agent has its own consumer, so a slow
or failing webhook delays only the webhook, never the parcel stream (the topic keeps every message).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aiohttp
from faust.types import StreamT

from subscriptions.vendors import retry_after

if TYPE_CHECKING:
    from . import StreamApp

log = logging.getLogger("parcelwatch.notify")
MAX_BACKOFF = 60.0
# Answers that say "not now" rather than "never": sent again after the backoff (or the answer's Retry-After).
SEND_AGAIN = frozenset((408, 429))


class NotificationWebhook:
    def __init__(self, stream: StreamApp) -> None:
        self.url = stream.notification_rules.webhook_url
        if self.url:
            stream.app.agent(stream.topology.notifications, name="notification_webhook")(self.run)

    async def run(self, stream: StreamT[bytes]) -> None:
        url = self.url
        assert url is not None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            # The body is forwarded as produced: the exact bytes on the topic.
            async for raw in stream:
                backoff = 1.0
                while True:
                    wait = backoff
                    try:
                        async with session.post(url, data=raw, headers={"Content-Type": "application/json"}) as resp:
                            if resp.status < 500 and resp.status not in SEND_AGAIN:
                                if resp.status >= 400:
                                    log.error("notification webhook refused a message: HTTP %s", resp.status)
                                break
                            log.warning("notification webhook answered HTTP %s; retrying", resp.status)
                            wait = max(wait, retry_after(resp.headers) or 0.0)
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        log.warning("notification webhook unreachable (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(min(wait, MAX_BACKOFF))
                    backoff = min(backoff * 2, MAX_BACKOFF)

