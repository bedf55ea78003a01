"""The worker's HTTP pages on the Faust web server: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


@dataclass
class Health:
    """Readiness of a worker: set once its store is connected and its model loaded; lost for good
    when one of its agents dies (the process must be restarted: Faust would otherwise restart the
    agent onto the same records, or leave its partitions unconsumed, while the process looks fine)."""

    role: str
    ready: bool = False
    failure: str = ""
    degraded: str = ""
    """A condition that fails /healthz while it lasts (set and cleared by whoever watches it)."""

    def fail(self, reason: str) -> None:
        self.failure = reason

    @property
    def healthy(self) -> bool:
        return self.ready and not self.failure and not self.degraded


def register(app: faust.App, health: Health, stats: Callable[[], dict[str, int]] | None = None) -> None:
    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        body: dict[str, Any] = {"role": health.role, "app": app.conf.id, "ready": health.healthy}
        if health.failure or health.degraded:
            body["error"] = health.failure or health.degraded
        return web.json(body, status=200 if health.healthy else 503)

    if stats is not None:
        @app.page("/stats")
        async def stats_page(web: Any, request: Any) -> Any:
            return web.json(stats())

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
