"""Web views on the worker's web server: the issue list, health, lane baselines and metrics."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from faust import web

from issue_store import ACTIVE_STATUSES, STATUSES

from . import telemetry as metrics
from .base import app, parcel_state
from .parcels import baselines
from .sinks import redis_state, store

MAX_PAGE = 500


class BadRequest(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _int_param(query: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(name, f"expected a whole number, got {raw[:20]!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(name, f"must be between {lo} and {hi}, got {value}")
    return value


@app.page("/issues")
class IssuesView(web.View):
    """``GET /issues?kind=&shop=&status=&severity=&order=priority|age&offset=&limit=`` as JSON."""

    async def get(self, request: web.Request) -> web.Response:
        q = request.query  # type: ignore[attr-defined]
        try:
            status_param = q.get("status") or ""
            statuses = tuple(s for s in status_param.split(",") if s) or ACTIVE_STATUSES
            for s in statuses:
                if s not in STATUSES:
                    raise BadRequest("status", f"unknown status {s!r}; expected one of {', '.join(STATUSES)}")
            order = q.get("order") or "priority"
            if order not in ("priority", "age"):
                raise BadRequest("order", "expected priority or age")
            limit = _int_param(q, "limit", 100, 1, MAX_PAGE)
            offset = _int_param(q, "offset", 0, 0, 10_000_000)
        except BadRequest as exc:
            return self.json({"error": str(exc), "field": exc.field}, status=422)
        shop = q.get("shop")
        shops = [shop] if shop else await store.shops()
        docs, total = await store.list(
            shops=shops, statuses=statuses, kind=q.get("kind") or None, severity=q.get("severity") or None,
            order=order, offset=offset, limit=limit,
        )
        return self.json({"total": total, "offset": offset, "limit": limit, "issues": docs})


@app.page("/healthz")
class HealthView(web.View):
    """Broker, Redis and table recovery readiness, each checked for real; 503 unless all are ready."""

    async def get(self, request: web.Request) -> web.Response:
        checks: dict[str, dict[str, Any]] = {}
        try:
            producer = app.producer._ensure_producer()  # type: ignore[attr-defined]
            await asyncio.wait_for(producer.client.fetch_all_metadata(), 3)
            checks["broker"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            checks["broker"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        try:
            await asyncio.wait_for(store.redis.ping(), 2)
            checks["redis"] = {"ok": True, "sink_writing": redis_state["up"]}
        except Exception as exc:  # noqa: BLE001
            checks["redis"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        recovered = app.tables.recovery.completed.is_set() and not app.rebalancing
        checks["tables"] = {
            "ok": recovered,
            "rebalancing": bool(app.rebalancing),
            # Subjects (parcels and unshipped orders) in this worker's store, all its partitions.
            "subjects": len(parcel_state.data),
        }
        ok = all(c["ok"] for c in checks.values())
        return self.json({"ok": ok, "checks": checks}, status=200 if ok else 503)


@app.page("/lanes")
class LanesView(web.View):
    """Each learned lane: sample count, p50/p90 and the limit in use with its source (learned or fallback)."""

    async def get(self, request: web.Request) -> web.Response:
        now = time.time()
        lanes = [
            {
                "lane": s.lane,
                "samples": s.samples,
                "p50_hours": s.p50_hours,
                "p90_hours": s.p90_hours,
                "limit_hours": s.limit_hours,
                "source": s.source,
            }
            for s in baselines.stats(now)
        ]
        return self.json({"quantile": baselines.cfg.quantile, "window_days": baselines.cfg.window_days, "lanes": lanes})


@app.page("/metrics")
class MetricsView(web.View):
    async def get(self, request: web.Request) -> web.Response:
        body, content_type = metrics.render()
        return self.bytes(body, content_type=content_type)
