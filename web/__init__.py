"""The HTTP side of a worker, on Faust's web server: the issue API (``api.py``), the queue page
(``page.py``, with ``static/``; sign-in and sessions in ``session.py``), a shop's logistics health
(``health_view.py``), the aggregators' push endpoints (``ingest.py``), the order endpoint (``orders.py``) and
what on-call and Prometheus read (``health.py``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from issue_queue.access import Access
from issue_queue.people import People

from .api import IssueApi
from .health import Health
from .health_view import ShopHealthApi
from .ingest import IngestEndpoints
from .orders import OrderEndpoint
from .page import QueuePage
from .session import Callers

if TYPE_CHECKING:
    from agents import StreamApp

log = logging.getLogger("parcelwatch.web")


def register(stream: StreamApp) -> None:
    """Serve every view of a worker on its Faust app's web server."""
    app, settings = stream.app, stream.settings
    callers = Callers(Access(settings.access.tokens), People(stream.store.redis, stream.store.prefix))
    IssueApi(app, settings, stream.store, callers, stream.recorder)
    QueuePage(app, settings.labels, stream.store, callers.people, callers)
    ShopHealthApi(app, stream, callers)
    OrderEndpoint(app, settings, stream.topology.orders, stream.dead_letters, stream.recorder)
    IngestEndpoints(app, settings, stream.topology.tracking, stream.recorder, stream.dead_letters)
    Health(stream)

    @app.task
    async def backfill_indexes() -> None:
        """Rows and search entries for a queue an older version wrote (once per queue; a few seconds per
        hundred thousand issues). The page works meanwhile: a missing row is made on first read."""
        try:
            await stream.store.backfill_indexes()
        except Exception:  # noqa: BLE001 - Redis away at start: the next start tries again
            log.warning("could not index the queue's older issues for search; the next start tries again")
