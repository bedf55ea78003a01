"""Running the Debezium bridge (:mod:`workers.debezium_bridge`) inside the indexer worker.

With ``FRESHET_DEBEZIUM_TOPIC`` set, the indexer worker runs the bridge as a background task in
its own consumer group, so the indexer workers share the Debezium topic's partitions. Should the
bridge die (a bug: every Kafka fault is waited out inside it), ``/healthz`` fails from then on.
"""

from __future__ import annotations

import asyncio

import faust
import structlog

from freshet.settings import Settings
from streams.web import Health
from workers.debezium_bridge import DebeziumBridge

log = structlog.get_logger(__name__)


def register(app: faust.App, settings: Settings, health: Health) -> None:
    """Start the bridge with the app when a Debezium topic is configured."""
    if not settings.debezium_topic:
        return
    bridge = DebeziumBridge(settings)

    @app.task  # type: ignore[untyped-decorator]
    async def debezium_bridge() -> None:
        try:
            await bridge.run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            health.fail(f"debezium bridge died: {type(exc).__name__}: {exc}")
            log.critical("debezium_bridge_died", error=f"{type(exc).__name__}: {exc}")
            raise
        health.fail("debezium bridge stopped")
