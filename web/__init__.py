"""The HTTP side of a worker, on Faust's web server: the issue API (``api.py``), the queue page
(``page.py``, with ``static/``; sign-in and sessions in ``session.py``), a shop's logistics health
(``health_view.py``), the aggregators' push endpoints (``ingest.py``) and what on-call and Prometheus read
(``health.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from issue_queue.access import Access
from issue_queue.people import People

from .api import IssueApi
from .health import Health
from .health_view import ShopHealthApi
from .ingest import IngestEndpoints
from .page import QueuePage
from .session import Callers

if TYPE_CHECKING:
    from agents import StreamApp


def register(stream: StreamApp) -> None:
    """Serve every view of a worker on its Faust app's web server."""
    app, settings = stream.app, stream.settings
    callers = Callers(Access(settings.access.tokens), People(stream.store.redis, stream.store.prefix))
    IssueApi(app, settings, stream.store, callers, stream.recorder)
    QueuePage(app, settings.labels, stream.store, callers.people, callers)
    ShopHealthApi(app, stream, callers)
    IngestEndpoints(app, settings, stream.topology.tracking, stream.recorder)
    Health(stream)
