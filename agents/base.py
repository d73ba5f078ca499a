"""The Faust app built from the validated configuration, with the topics and tables every agent shares.

All topics carry raw bytes (JSON encoded and validated by our own code with orjson): a malformed event
must reach our handler, which dead-letters it with the reason, instead of failing inside Faust's codec.
Every topic that feeds the parcel state has the same partition count, keyed by subject, so the state
table, the deadline index and the ticks are co-partitioned.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faust

import config
from changelog_writer import ChangelogWriter
from kafka_tools import (
    patch_producer_buffer_flush,
    patch_seek_before_resuming_streams,
    patch_seek_to_committed,
    patch_send_failure_guard,
    patch_track_produced_topics,
)

log = logging.getLogger("parcelwatch")

settings = config.load()
_cfg = settings.app
embedded = _cfg.broker_kind == "embedded"

patch_seek_to_committed()  # aiokafka#1003: never-committed partitions must be re-read, not skipped
patch_seek_before_resuming_streams()  # ... and no stream record is fetched before that seek
patch_producer_buffer_flush()  # offsets are committed only after the table writes they cover
patch_send_failure_guard()  # ... and never past a record the broker did not accept
patch_track_produced_topics()  # a topic produced to never falls out of the producer's metadata

if embedded:
    from embedded.tansu_compat import patch_fetch_wait, patch_highwaters

    patch_highwaters(_cfg.broker.split(";")[0].removeprefix("kafka://"))
    patch_fetch_wait()  # each hop between agents waited about 0.5 s on Tansu (tansu_compat.py)

app = faust.App(
    _cfg.id,
    broker=_cfg.broker,
    store=_cfg.store,
    datadir=str(Path(_cfg.data_dir)),
    topic_partitions=_cfg.partitions,
    web_host=_cfg.web_host,
    web_port=_cfg.web_port,
    web_bind=_cfg.web_host,
    broker_session_timeout=_cfg.session_timeout_seconds,
    broker_heartbeat_interval=min(3.0, _cfg.session_timeout_seconds / 3),
    producer_linger=_cfg.producer_linger_ms / 1000.0,
    # Kafka without idempotent producers (and Tansu) gives at-least-once: our sinks are idempotent.
    processing_guarantee="at_least_once",
    topic_replication_factor=1 if embedded else 3,
    table_standby_replicas=0 if embedded else 1,
    web_in_thread=False,
)

# Every table write goes through this writer (changelog_writer.py): the same changelog records as
# Faust's, batched per partition instead of one Faust send per record (~165 us each, the worker's main
# cost), acknowledged before any offset is committed.
writer = ChangelogWriter(app)

T = settings.topics


def _topic(name: str) -> faust.TopicT:
    return app.topic(
        name,
        key_type=str,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=_cfg.partitions,
        internal=True,  # declared (created) by the app with the configured partition count
    )


tracking_topic = _topic(T.tracking)
orders_topic = _topic(T.orders)
order_facts_topic = _topic(T.order_facts)
order_purges_topic = _topic(T.order_purges)
ticks_topic = _topic(T.ticks)
issues_topic = _topic(T.issues)
dead_letter_topic = _topic(T.dead_letter)
deliveries_topic = _topic(T.deliveries)
alert_routing_topic = _topic(T.alert_routing)
notifications_topic = _topic(T.notifications)


def _inputs(*names: str) -> faust.TopicT:
    """One channel over co-partitioned input topics (raw bytes, string keys), for one agent."""
    return app.topic(*names, key_type=str, value_type=bytes, key_serializer="raw", value_serializer="raw")


# The parcel state's inputs, keyed by subject.
parcel_inputs = _inputs(T.tracking, T.order_facts, T.ticks)
# The order router's inputs, both keyed by order id (co-partitioned with the orders table): order events,
# and the parcel side's notices that a subject of an order was deleted.
order_inputs = _inputs(T.orders, T.order_purges)


class RawTable(faust.Table):
    """A table whose store and changelog hold raw bytes: our own compact encoding, no JSON-over-JSON.

    Faust derives a table's serializers from its key/value types ("json" for str and bytes), and the
    store and the changelog recovery read them at construction; overriding the derivation is the one
    place that covers all three.
    """

    def _serializer_from_type(self, typ: object) -> str:
        return "raw"


def _table(name: str, help: str) -> RawTable:
    table = RawTable(
        app, name=name, key_type=str, value_type=bytes, partitions=_cfg.partitions, help=help,
        beacon=app.tables.beacon,
    )
    return app.tables.add(table)  # type: ignore[return-value]


parcel_state = _table("parcel-state", "subject (parcel or unshipped order) -> ParcelState.encode()")
deadline_index = _table(
    "deadline-index",
    '"{partition}:{bucket}[:{n}]" -> newline-separated subjects (chunks); "{partition}:{bucket}:tail" -> n; '
    '"{partition}:cursor" -> bucket',
)
order_table = _table("orders", "order id -> OrderFacts.to_json()")
