"""Issue alert routing: issue events -> routes (YAML rules) -> chat robots, webhooks and Kafka.

``load_routes()`` reads and validates ``config/alert_routes.yaml``; ``AlertRouter(config).submit(issue)``
routes one issue event without ever waiting on a destination; ``LaneIncidents`` turns many overdue parcels
on one lane into a single lane incident.
"""

from .config import AlertConfig, DestinationConfig, Digest, IncidentSettings, Match, RateLimit, RetryPolicy, Route, load_routes
from .destinations import DeliveryError, Destination, KafkaSend
from .incidents import LaneIncidents, Verdict
from .router import AlertRouter, RateLimiter

__all__ = [
    "AlertConfig",
    "AlertRouter",
    "DeliveryError",
    "Destination",
    "DestinationConfig",
    "Digest",
    "IncidentSettings",
    "KafkaSend",
    "LaneIncidents",
    "Match",
    "RateLimit",
    "RateLimiter",
    "RetryPolicy",
    "Route",
    "Verdict",
    "load_routes",
]
