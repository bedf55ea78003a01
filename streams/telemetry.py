"""Publishing the worker's metrics snapshot (:mod:`schemas.metrics`) on the metrics topic."""

from __future__ import annotations

import faust
import structlog

from freshet.settings import Settings
from streams.app import Topics
from workers.telemetry import SnapshotBuilder

log = structlog.get_logger(__name__)


def register(app: faust.App, topics: Topics, settings: Settings, builder: SnapshotBuilder, instance: str) -> None:
    """Every ``metrics_interval_seconds``, send a snapshot keyed by the worker instance."""

    @app.timer(interval=settings.metrics_interval_seconds)  # type: ignore[untyped-decorator]
    async def publish_snapshot() -> None:
        snapshot = builder.build()
        await topics.metrics.send(key=instance.encode(), value=snapshot.model_dump_json().encode())
