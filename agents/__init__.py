"""Faust wiring only: the app, its topics and tables, the agents and their timers.

``build(settings)`` makes one worker's stream application: the Faust app with every topic, table, agent and
timer registered on it, and the objects they share (the commit order, the metrics, the issue store, the lane
baselines). The logic they run lives elsewhere and knows nothing of Faust: ``core/`` (the processor, the
order router, the clock), ``detectors/``, ``issue_queue/``, ``alerting/``; how records reach the broker and
when offsets may be committed lives in ``delivery/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import faust

from config import Settings
from core.notifications import NotificationRules, load_rules
from delivery import framework
from delivery.batch_records import SharedDecodes
from delivery.checkpoint import Checkpoint
from delivery.dead_letters import DeadLetters
from delivery.tansu import LifetimeWatch
from detectors import LaneBaselines
from issue_queue.store import IssueStore
from telemetry.recorder import Recorder

from .topology import Topology, make_app

if TYPE_CHECKING:
    from .alerts import AlertRouting
    from .issue_sink import IssueSink
    from .notification_webhook import NotificationWebhook
    from .orders import OrderRouterAgent
    from .parcels import ParcelAgent
    from .shop_health import ShopHealthAgent
    from .subscriptions import SubscriptionAgents


@dataclass(eq=False)
class StreamApp:
    """One worker's Faust app and what its agents share."""

    settings: Settings
    app: faust.App
    topology: Topology
    checkpoint: Checkpoint
    recorder: Recorder
    dead_letters: DeadLetters
    store: IssueStore
    baselines: LaneBaselines
    notification_rules: NotificationRules
    # The id of the broker lifetime this process started in (the embedded broker's marker, read by
    # ``app.py`` before the worker starts; None: not known, e.g. on Apache Kafka).
    broker_lifetime: str | None = None
    # Restarts the worker in place when the embedded broker comes back empty (delivery/tansu.py).
    lifetime_watch: LifetimeWatch | None = None
    # The issues topic's records, decoded once for its two readers (the issue sink, the lane re-keying).
    issue_decodes: SharedDecodes = field(default_factory=lambda: SharedDecodes(readers=2))
    # The agents, registered on ``app`` by ``build`` (the web views read some of their state).
    parcels: ParcelAgent | None = None
    orders: OrderRouterAgent | None = None
    issue_sink: IssueSink | None = None
    alerts: AlertRouting | None = None
    notification_webhook: NotificationWebhook | None = None
    subscriptions: SubscriptionAgents | None = None
    shop_health: ShopHealthAgent | None = None


class Agent:
    """What every agent of a stream app reads: the app, its topics and their names, the partition count,
    the metrics."""

    def __init__(self, stream: StreamApp) -> None:
        self.stream = stream
        self.app = stream.app
        self.topics = stream.topology
        self.names = stream.settings.topics
        self.partitions = stream.settings.app.partitions
        self.recorder = stream.recorder


def build(settings: Settings) -> StreamApp:
    """The stream application of one worker process, with every agent, table and timer registered."""
    from .alerts import AlertRouting
    from .issue_sink import IssueSink
    from .notification_webhook import NotificationWebhook
    from .orders import OrderRouterAgent
    from .parcels import ParcelAgent
    from .shop_health import ShopHealthAgent
    from .subscriptions import SubscriptionAgents

    cfg = settings.app
    app = make_app(settings)
    topology = Topology(app, settings)
    checkpoint = Checkpoint(app)
    embedded = cfg.broker_kind == "embedded"
    framework.install(checkpoint, tansu_bootstrap=cfg.broker.split(";")[0].removeprefix("kafka://") if embedded else None)
    recorder = Recorder(settings)
    stream = StreamApp(
        settings=settings, app=app, topology=topology, checkpoint=checkpoint, recorder=recorder,
        dead_letters=DeadLetters(topology.dead_letter, recorder), store=IssueStore.from_url(cfg.redis_url),
        baselines=LaneBaselines(settings.lanes), notification_rules=load_rules(),
    )
    stream.parcels = ParcelAgent(stream)
    stream.orders = OrderRouterAgent(stream)
    stream.issue_sink = IssueSink(stream)
    stream.alerts = AlertRouting(stream)
    stream.notification_webhook = NotificationWebhook(stream)
    stream.subscriptions = SubscriptionAgents(stream) if settings.subscriptions.enabled else None
    stream.shop_health = ShopHealthAgent(stream)
    if embedded:
        _watch_broker_lifetime(stream, cfg.broker.split(";")[0].removeprefix("kafka://"))
    return stream


def _watch_broker_lifetime(stream: StreamApp, bootstrap: str) -> None:
    """The embedded broker keeps nothing across its restarts: a worker that sees it come back empty starts
    again in place (``LifetimeWatch``), checked every few seconds and whenever partitions are assigned (a
    restarted broker has lost the group), before any record of the new lifetime is processed."""
    watch = stream.lifetime_watch = LifetimeWatch(bootstrap, lambda: stream.broker_lifetime)

    async def on_assigned(sender: object, *args: object, **kwargs: object) -> None:
        await watch.check()

    stream.app.service(watch)  # type: ignore[arg-type]  # (an instance is started as it is)
    stream.app.on_partitions_assigned.connect(on_assigned)  # type: ignore[arg-type]


__all__ = ["Agent", "StreamApp", "build"]
