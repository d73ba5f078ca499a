"""``python app.py register-parcels``: register a shop's past parcels in bulk, see what failed, try again.

    python app.py register-parcels ExportOrderList.csv --platform taobao --shop shop-a --since 2026-11-01
    python app.py register-parcels events.jsonl --shop shop-a        # order events (JSON Lines), shipped ones
    python app.py register-parcels --retry-failed [--shop shop-a]    # the failed ones again (after a fix)
    python app.py register-parcels --status                          # counts and the latest failures

The parcels are filed in Redis like the stream files them (once per parcel: known ones are left alone); the
workers register them at the vendor's rate. Shipments older than ``subscriptions.max_age_days`` are not
registered by themselves, so registering past parcels is this command's job; ``--since`` limits it (the
vendors charge per parcel).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from config import Settings, without_secrets
from domain.events import InvalidEvent, OrderEvent, parse_order_event, parse_time

from .store import SubscriptionStore
from .vendors import Parcel


def shipped_parcels(events: list[OrderEvent], since: float | None) -> list[Parcel]:
    out: dict[str, Parcel] = {}
    for ev in events:
        if ev.kind == "shipped" and ev.carrier and ev.tracking_number and (since is None or ev.event_time >= since):
            parcel = Parcel(ev.carrier, ev.tracking_number, ev.shop, ev.order_id, ev.platform, ev.origin_province,
                            ev.destination_province, ev.destination_city)
            out.setdefault(parcel.key, parcel)
    return list(out.values())


def read_events(args: argparse.Namespace, err: TextIO) -> list[OrderEvent]:
    """Order events from JSON Lines files (bare events, or replay's {"topic", "value"} lines), or exports."""
    jsonl = [Path(f) for f in args.files if f.endswith((".jsonl", ".json"))]
    exports = [f for f in args.files if not f.endswith((".jsonl", ".json"))]
    events: list[OrderEvent] = []
    for path in jsonl:
        if not path.is_file():
            raise ValueError(f"{path}: no such file")  # (an OSError here would read as Redis being away)
        for n, line in enumerate(path.read_bytes().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
                doc = doc.get("value", doc) if isinstance(doc, dict) and "topic" in doc else doc
                if isinstance(doc, dict) and doc.get("kind") is not None:
                    ev = parse_order_event(doc)
                    if args.shop is None or ev.shop == args.shop:
                        events.append(ev)
            except (orjson.JSONDecodeError, InvalidEvent) as exc:
                err.write(f"{path.name}: line {n}: {exc}\n")
    if exports:
        from importers import cli as importers

        if not args.shop:
            raise ValueError("--shop is required with export files (the shop their orders belong to)")
        convert_args = argparse.Namespace(**{**vars(args), "files": exports, "exported_at": None, "origin_province": None})
        converted, report = importers.convert(convert_args, None)
        for error in report.errors[: importers.MAX_ERRORS_SHOWN]:
            err.write(f"{error}\n")
        events.extend(converted)
    return events


async def register_parcels(settings: Settings, redis_url: str, where: str, args: argparse.Namespace,
                           out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    cfg = settings.subscriptions
    if not cfg.enabled and not (args.status or args.dry_run):
        err.write("register-parcels: subscriptions.aggregator is none: set PARCELWATCH_SUBSCRIPTIONS (and the vendor's key) "
                  "for the workers first, or nothing will register what is filed\n")
        return 2
    redis = aioredis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=3)
    store = SubscriptionStore(redis)
    try:
        if args.status:
            counts = await store.counts()
            out.write(f"aggregator {cfg.aggregator}: registered {counts['registered']}, pending {counts['pending']}, "
                      f"failed {counts['failed']} (Redis {without_secrets(redis_url)})\n")
            for f in await store.failures(20):
                out.write(f"  {f['parcel']}  shop {f['shop']}  order {f['order_id']}  {f['error']}\n")
            return 0
        if args.retry_failed:
            parcels = await store.failed_parcels(args.shop)
            results = Counter(await store.enqueue(parcels, time.time(), retry_failed=True))
            out.write(f"filed {results['requeued']} failed parcels again\n")
            return 0
        if not args.files:
            err.write("register-parcels: name export or JSON Lines files, or --retry-failed, or --status\n")
            return 2
        since = parse_time(args.since if "T" in args.since else args.since + "T00:00:00+08:00", "--since") if args.since else None
        parcels = shipped_parcels(read_events(args, err), since)
        if args.dry_run:
            for parcel in parcels:
                out.write(json.dumps({"parcel": parcel.key, "shop": parcel.shop, "order_id": parcel.order_id}, ensure_ascii=False) + "\n")
            err.write(f"dry run: {len(parcels)} parcels, none filed\n")
            return 0
        results = Counter[str]()
        for start in range(0, len(parcels), 500):
            results.update(await store.enqueue(parcels[start : start + 500], time.time()))
        known = ", ".join(f"{state} {n}" for state, n in sorted(results.items()) if state != "queued") or "none"
        out.write(f"filed {results['queued']} parcels for {cfg.aggregator}; already known: {known}\n")
        return 0
    except (RedisError, OSError) as exc:
        err.write(f"register-parcels: cannot reach Redis at {without_secrets(redis_url)} (from {where}): {type(exc).__name__}\n")
        return 2
    except (InvalidEvent, ValueError) as exc:
        err.write(f"register-parcels: {exc}\n")
        return 2
    finally:
        await redis.aclose()


def namespace(**kw: Any) -> argparse.Namespace:
    """The options as ``app.py``'s command hands them over (with the importer's defaults)."""
    base: dict[str, Any] = {"files": [], "platform": None, "mapping": None, "shop": None, "since": None,
                            "retry_failed": False, "status": False, "dry_run": False}
    return argparse.Namespace(**{**base, **kw})

