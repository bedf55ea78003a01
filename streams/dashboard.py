"""The built-in dashboard (no Grafana needed): the query worker follows the metrics topic and
serves the last hour of every worker's snapshots at ``/dashboard/data`` and one page at
``/dashboard`` that draws them (``ops/dashboard/index.html``)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from datetime import datetime
from pathlib import Path
from typing import Any

import faust
import structlog

from freshet.settings import Settings
from schemas.metrics import MetricsSnapshot
from workers.log_reader import LogRecord, follow_topic

log = structlog.get_logger(__name__)

PAGE = Path(__file__).resolve().parents[1] / "ops" / "dashboard" / "index.html"
HISTORY_SECONDS = 3600.0


def register(app: faust.App, settings: Settings) -> None:
    history: dict[str, deque[dict[str, Any]]] = defaultdict(lambda: deque(maxlen=2000))

    def on_snapshots(records: list[LogRecord]) -> None:
        for r in records:
            if r.value is None:
                continue
            try:
                snap = MetricsSnapshot.model_validate_json(r.value)
            except ValueError as exc:
                log.warning("metrics_record_unreadable", partition=r.partition, offset=r.offset, error=str(exc)[:200])
                continue
            history[snap.instance].append(snap.model_dump(mode="json"))

    @app.task  # type: ignore[untyped-decorator]
    async def follow_metrics() -> None:
        while True:
            try:
                await follow_topic(settings.kafka_access, settings.topic_metrics, on_snapshots, asyncio.Event(),
                                   since=time.time() - HISTORY_SECONDS)
            except Exception as exc:  # noqa: BLE001 - the feed must outlive a broker hiccup
                log.warning("metrics_feed_retrying", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(2)

    @app.page("/dashboard")
    async def page(web: Any, request: Any) -> Any:
        return web.html(PAGE.read_text(encoding="utf-8"))

    @app.page("/dashboard/data")
    async def data(web: Any, request: Any) -> Any:
        cutoff = time.time() - HISTORY_SECONDS
        out = {instance: [s for s in snaps if _epoch(s["at"]) >= cutoff] for instance, snaps in history.items()}
        return web.json({"instances": out, "now": time.time()})


def _epoch(at: str) -> float:
    return datetime.fromisoformat(at).timestamp()
