"""Issue alert routing: issue events -> routes (YAML rules) -> chat robots, webhooks and Kafka.

``load_routes()`` reads and validates ``config/alert_routes.yaml``; ``AlertRouter(config, redis=...).submit(issue)``
routes one issue event without ever waiting on a destination, within each platform's documented limits
(``vendors.py``) shared by every worker through Redis (``limits.py``); ``LaneIncidents`` turns many overdue
parcels on one lane into a single lane incident.
"""

from .config import (
    AlertConfig,
    DestinationConfig,
    Digest,
    IncidentSettings,
    Match,
    Mention,
    OnCall,
    QuietHours,
    RetryPolicy,
    Route,
    load_routes,
)
from .destinations import DeliveryError, Destination, KafkaSend
from .incidents import LaneIncidents, Verdict
from .limits import LocalLimits, SharedLimits
from .router import AlertRouter, Refusal
from .vendors import VENDORS, RateLimit

__all__ = [
    "VENDORS",
    "AlertConfig",
    "AlertRouter",
    "DeliveryError",
    "Destination",
    "DestinationConfig",
    "Digest",
    "IncidentSettings",
    "KafkaSend",
    "LaneIncidents",
    "LocalLimits",
    "Match",
    "Mention",
    "OnCall",
    "QuietHours",
    "RateLimit",
    "Refusal",
    "RetryPolicy",
    "Route",
    "SharedLimits",
    "Verdict",
    "load_routes",
]
