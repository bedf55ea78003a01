"""The worker's HTTP pages on the Faust web server: ``/healthz`` and ``/metrics``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


@dataclass
class Health:
    """Readiness of a worker: set once its store is connected and its model loaded."""

    role: str
    ready: bool = False


def register(app: faust.App, health: Health, stats: Callable[[], dict[str, int]] | None = None) -> None:
    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        body = {"role": health.role, "app": app.conf.id, "ready": health.ready}
        return web.json(body, status=200 if health.ready else 503)

    if stats is not None:
        @app.page("/stats")
        async def stats_page(web: Any, request: Any) -> Any:
            return web.json(stats())

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])
