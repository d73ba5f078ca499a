"""Buyer notifications out: the notifications topic is the product; a webhook is optional.

parcelwatch never sends SMS itself. When ``webhook_url`` is set in config/notifications.yaml, each
notification is POSTed there as JSON, with retries and backoff; this agent has its own consumer, so a
slow or failing webhook delays only the webhook, never the parcel stream (the topic keeps every message).
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from faust.types import StreamT

from .base import app, notifications_topic
from .parcels import notification_rules

log = logging.getLogger("parcelwatch.notify")
MAX_BACKOFF = 60.0

if notification_rules.webhook_url:
    url = notification_rules.webhook_url

    @app.agent(notifications_topic)
    async def notification_webhook(stream: StreamT[bytes]) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            # The body is forwarded as produced: the exact bytes on the topic.
            async for raw in stream:
                backoff = 1.0
                while True:
                    try:
                        async with session.post(url, data=raw, headers={"Content-Type": "application/json"}) as resp:
                            if resp.status < 500:
                                if resp.status >= 400:
                                    log.error("notification webhook refused a message: HTTP %s", resp.status)
                                break
                            log.warning("notification webhook answered HTTP %s; retrying", resp.status)
                    except (TimeoutError, aiohttp.ClientError) as exc:
                        log.warning("notification webhook unreachable (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
