"""The Faust app built from the validated configuration, and the topics and tables every agent shares.

All topics carry raw bytes (JSON encoded and validated by our own code with orjson): a malformed event
must reach our handler, which dead-letters it with the reason, instead of failing inside Faust's codec.
Every topic that feeds the parcel state has the same partition count, keyed by subject, so the state
table, the deadline index and the ticks are co-partitioned.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import faust
from mode.utils.times import want_seconds

from config import Settings
from delivery.topics import TopicSpec
from domain.vocabulary import DAY


def make_app(settings: Settings) -> faust.App:
    cfg = settings.app
    embedded = cfg.broker_kind == "embedded"
    return faust.App(
        cfg.id,
        broker=cfg.broker,
        store=cfg.store,
        datadir=str(Path(cfg.data_dir)),
        topic_partitions=cfg.partitions,
        web_host=cfg.web_host,
        web_port=cfg.web_port,
        web_bind=cfg.web_host,
        broker_session_timeout=cfg.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, cfg.session_timeout_seconds / 3),
        producer_linger=cfg.producer_linger_ms / 1000.0,
        producer_request_timeout=cfg.producer_request_timeout_seconds,
        # Kafka without idempotent producers (and Tansu) gives at-least-once: every sink is idempotent.
        processing_guarantee="at_least_once",
        topic_replication_factor=1 if embedded else cfg.replication_factor,
        table_standby_replicas=0 if embedded else 1,
        web_in_thread=False,
        # Faust's own /table/ and /router/ views would serve the tables (orders, parcels' scans) without a
        # token; nothing here routes a request by table key.
        web_tables_enabled=False,
        web_router_enabled=False,
    )


class RawTable(faust.Table):
    """A table whose store and changelog hold raw bytes: our own compact encoding, no JSON-over-JSON.

    Faust derives a table's serializers from its key/value types ("json" for str and bytes), and the
    store and the changelog recovery read them at construction; overriding the derivation is the one
    place that covers all three.
    """

    def _serializer_from_type(self, typ: object) -> str:
        return "raw"


class Topology:
    """The app's topics and tables."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.partitions = settings.app.partitions
        self.names = names = settings.topics
        self.tracking = self._topic(names.tracking)
        self.orders = self._topic(names.orders)
        self.order_facts = self._topic(names.order_facts)
        self.order_purges = self._topic(names.order_purges)
        self.ticks = self._topic(names.ticks)
        self.issues = self._topic(names.issues)
        self.dead_letter = self._topic(names.dead_letter)
        # Every worker's lane baselines read the whole topic at start: it keeps what they learn from (the
        # horizon before the oldest refresh still asked, and a day to spare), not Kafka's default week.
        lanes = settings.lanes
        self.deliveries = self._topic(
            names.deliveries, retention=(lanes.horizon_days + 1) * DAY + lanes.refresh_minutes * 60.0
        )
        self.alert_routing = self._topic(names.alert_routing)
        self.notifications = self._topic(names.notifications)
        self.subscriptions = self._topic(names.subscriptions)
        self.shop_logistics = self._topic(names.shop_logistics)
        # The parcel state's inputs, keyed by subject.
        self.parcel_inputs = self._inputs(names.tracking, names.order_facts, names.ticks)
        # The order router's inputs, both keyed by order id (co-partitioned with the orders table): order
        # events, and the parcel side's notices that a subject of an order was deleted.
        self.order_inputs = self._inputs(names.orders, names.order_purges)
        self.parcel_state = self._table("parcel-state", "subject (parcel or unshipped order) -> ParcelState.encode()")
        self.deadline_index = self._table(
            "deadline-index",
            '"{partition}:{bucket}[:{n}]" -> newline-separated subjects (chunks); "{partition}:{bucket}:tail" -> n; '
            '"{partition}:cursor" -> bucket',
        )
        self.order_table = self._table("orders", "order id -> OrderFacts.to_json()")

    def specs(self) -> list[TopicSpec]:
        """Every topic of the app as the worker creates it before it starts (``delivery/topics.py``): the
        configured partitions, the app's replicas, and the deliveries topic's retention. The dead letters and
        the notifications are sent by key: any partition count works for them."""
        replication = self.app.conf.topic_replication_factor
        by_key_only = {self.names.dead_letter, self.names.notifications}
        specs = []
        for setting in dataclasses.fields(self.names):  # (each topic setting names an attribute here)
            topic: faust.TopicT = getattr(self, setting.name)
            [name] = topic.topics
            config = {} if topic.retention is None else {"retention.ms": str(int(want_seconds(topic.retention) * 1000))}
            specs.append(TopicSpec(name, self.partitions, replication, config, exact=name not in by_key_only))
        return specs

    def _topic(self, name: str, retention: float | None = None) -> faust.TopicT:
        return self.app.topic(
            name, key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw",
            partitions=self.partitions, retention=retention,
            internal=True,  # declared (created) by the app with the configured partition count
        )

    def _inputs(self, *names: str) -> faust.TopicT:
        """One channel over co-partitioned input topics (raw bytes, string keys), for one agent."""
        return self.app.topic(*names, key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def _table(self, name: str, help: str) -> RawTable:
        table = RawTable(self.app, name=name, key_type=str, value_type=bytes, partitions=self.partitions, help=help,
                         beacon=self.app.tables.beacon)
        return self.app.tables.add(table)  # type: ignore[return-value]
