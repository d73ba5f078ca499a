"""The HTTP side of a worker, on Faust's web server: the issue API (``api.py``), the queue page
(``page.py``, with ``static/``), the aggregators' push endpoints (``ingest.py``), the order endpoint
(``orders.py``) and what on-call and Prometheus read (``health.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from issue_queue.access import Access

from .api import IssueApi
from .health import Health
from .ingest import IngestEndpoints
from .orders import OrderEndpoint
from .page import QueuePage

if TYPE_CHECKING:
    from agents import StreamApp


def register(stream: StreamApp) -> None:
    """Serve every view of a worker on its Faust app's web server."""
    app, settings = stream.app, stream.settings
    access = Access(settings.access.tokens)
    IssueApi(app, settings, stream.store, access, stream.recorder)
    QueuePage(app, settings.labels, stream.store, access)
    OrderEndpoint(app, settings, stream.topology.orders, stream.dead_letters, stream.recorder)
    IngestEndpoints(app, settings, stream.topology.tracking, stream.recorder, stream.dead_letters)
    Health(stream)
