"""The app's topics, created by the worker before it starts, with the partitions, replicas and settings it needs.

Left to the broker, a topic the app sends to before anything declared it is created with the broker's own
defaults when a client first asks for it (Tansu: 4 partitions; Kafka: ``num.partitions``, 1 unless set, and
a week's retention), or not at all where auto-creation is off, as on most managed Kafka. The app sends to
explicit partitions (a subject's inputs, state and ticks share a partition; batch records go one per
partition), so a topic with another partition count fails its sends or splits what must stay together. So
before the worker starts, every missing topic is created, and every existing one that must have
``app.partitions`` is checked: a wrong count stops the start with the topic named, instead of failing later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code

from delivery.framework import cluster_metadata


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: Mapping[str, str] = field(default_factory=dict)
    # Must have exactly ``partitions`` (False: any count works, e.g. a topic sent to by key only).
    exact: bool = True


class TopicMismatch(Exception):
    """Existing topics whose partition count is not the one the app needs."""

    def __init__(self, wrong: Sequence[tuple[str, int, int]]) -> None:
        self.wrong = list(wrong)
        listed = ", ".join(f"{name} has {have}" for name, have, _ in self.wrong)
        need = self.wrong[0][2]
        super().__init__(
            f"{listed} partitions; app.partitions (PARCELWATCH_PARTITIONS) is {need}, and every topic of the app "
            f"needs that count: set it to match the topics, or give the topics that count"
        )


@dataclass(frozen=True)
class ShortRetention:
    """An existing topic that keeps its records for less than the app reads back from it (``retention.ms``)."""

    topic: str
    have_ms: int
    need_ms: int

    def __str__(self) -> str:
        return (f"{self.topic} keeps its records {self.have_ms / 86_400_000:.3g} days (retention.ms {self.have_ms}), "
                f"and the app reads {self.need_ms / 86_400_000:.3g} days back from it: a restarted worker finds only "
                f"what is left. Set its retention.ms to {self.need_ms} (kafka-configs.sh --alter --entity-type topics "
                f"--entity-name {self.topic} --add-config retention.ms={self.need_ms})")


@dataclass(frozen=True)
class Prepared:
    created: list[str]
    short_retention: list[ShortRetention]


async def create_topics(bootstrap: str, specs: Sequence[TopicSpec]) -> Prepared:
    """Create the topics of ``specs`` the cluster does not have, and read the retention of those it has that
    need one. Raises TopicMismatch for existing topics with the wrong partition count, and the broker's error
    when it refuses a creation. An existing topic's retention is left as it is (only a whole config can be
    set through aiokafka, which would drop the topic's other settings): a short one is reported."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # (Every topic: asked with an empty list, Kafka names none, see delivery/clients.py.)
        cluster = await cluster_metadata(admin)
        have = {s.name: cluster.partitions_for_topic(s.name) for s in specs}
        wrong = [(s.name, len(p), s.partitions) for s in specs if (p := have[s.name]) is not None
                 and s.exact and len(p) != s.partitions]
        if wrong:
            raise TopicMismatch(wrong)
        missing = [s for s in specs if have[s.name] is None]
        if missing:
            response = await admin.create_topics([
                NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.config)) for s in missing
            ])
            for name, code, *message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):  # (another worker starting at once)
                    raise for_code(code)(f"cannot create topic {name}: {(message[0] if message else None) or code}")
        kept = [s for s in specs if have[s.name] is not None and "retention.ms" in s.config]
        return Prepared([s.name for s in missing], await _short_retention(admin, kept))
    finally:
        await admin.close()


async def _short_retention(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> list[ShortRetention]:
    """Those of ``specs`` whose topic keeps records for less than their ``retention.ms`` (-1: forever). A topic
    whose retention the broker does not say (Tansu names only the settings a topic was created with, and a
    principal may lack the right to read them) passes: this is advice, never a reason not to start."""
    if not specs:
        return []
    need = {s.name: int(s.config["retention.ms"]) for s in specs}
    found: dict[str, int] = {}
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in need])
    except KafkaError:
        return []
    for response in responses:
        for code, _, _, name, entries in response.resources:
            for entry in entries if code == 0 else ():
                if entry[0] == "retention.ms" and entry[1] is not None:
                    found[name] = int(entry[1])
    return [ShortRetention(name, have_ms, need[name]) for name, have_ms in found.items()
            if 0 <= have_ms < need[name]]


def create_topics_before_sending(bootstrap: str, specs: Sequence[TopicSpec]) -> str | None:
    """For a command that sends to the app's topics (an order import, the simulator), which may run before the
    first worker: the topics created as that worker would create them, so the first send does not leave one to
    the broker's defaults (which the worker would then refuse). None, or why not, to print before sending
    nothing. Not from a running event loop."""
    try:
        asyncio.run(create_topics(bootstrap, specs))
    except KafkaConnectionError:
        return f"cannot reach the broker at {bootstrap}"
    except (TopicMismatch, KafkaError) as exc:
        return refusal(exc)
    return None


def refusal(exc: TopicMismatch | KafkaError) -> str:
    """What stops the app's topics from being as it needs them, said for the person starting it: a topic with
    another partition count, or a creation the broker refused (e.g. more replicas than it has brokers)."""
    return str(exc) if isinstance(exc, TopicMismatch) else f"{type(exc).__name__}: {exc}"
