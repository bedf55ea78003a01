"""A Kafka broker and a Weaviate server of the chaos tier's own, and one pipeline per scenario.

The chaos scenarios kill brokers and stores, so they never run on the shared local stack
(``127.0.0.1:9092`` / ``:8080``): :func:`start_services` starts a broker and a server on free ports
with their own home (``.freshet/chaos/services``), and each scenario runs its own indexer and query
worker on its own topics and collection there (:func:`start_pipeline`). Every process is started
by the project's launcher, so its pid file says which process a fault may hit.
"""

from __future__ import annotations

import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from freshet.settings import Settings
from ops import faults, procs
from ops.stack import Stack, isolated

#: Declared metadata fields of the chaos pipelines (the workload's metadata; filterable).
METADATA_FIELDS = "lang:text,year:int,tags:text[]"


@dataclass(frozen=True)
class Services:
    """The chaos tier's own broker and store: ``settings`` names them, ``stack`` starts and stops them."""

    settings: Settings
    stack: Stack

    def pidfile(self, service: str) -> Path:
        return self.settings.home / "run" / f"{service}.pid"


def stop_leftovers(root: Path) -> None:
    """Stop every process a previous chaos run started under ``root`` (found by its pid files)."""
    for pidfile in sorted(root.glob("**/run/*.pid"), key=lambda p: p.stem in ("kafka", "weaviate")):
        procs.stop(pidfile, timeout=30)


def start_services(root: Path) -> Services:
    """A fresh broker and store on free ports under ``root / 'services'`` (wiped first)."""
    stop_leftovers(root)
    home = root / "services"
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings(
        kafka_bootstrap="", kafka_host="127.0.0.1", kafka_port=procs.free_port(),
        kafka_controller_port=procs.free_port(), weaviate_host="127.0.0.1", weaviate_http_port=procs.free_port(),
        weaviate_grpc_port=procs.free_port(), home=home, start_timeout_seconds=300, topic_partitions=4,
    )
    stack = Stack(settings)
    stack.up(["kafka", "weaviate"])
    return Services(settings, stack)


def pipeline_settings(services: Services, scenario: str, root: Path, **overrides: object) -> Settings:
    """Settings of one scenario's pipeline: own topics, collection, groups, ports and home."""
    tag = f"chaos-{scenario}-{uuid.uuid4().hex[:6]}"
    home = root / scenario
    shutil.rmtree(home, ignore_errors=True)
    fields: dict[str, object] = {
        "topic_partitions": 4, "index_linger_seconds": 0.3, "kafka_session_timeout_seconds": 6.0,
        "delete_grace_seconds": 2.0, "delivery_check_seconds": 5.0, "max_document_bytes": 200_000,
        "start_timeout_seconds": 300, "metadata_fields": METADATA_FIELDS, "query_deadline_ms": 10_000,
        "query_max_wait_ms": 10_000, "probe_interval_seconds": 10.0, "quality_interval_seconds": 3600.0,
        "golden_dir": "",
    }
    fields.update(overrides)
    return isolated(services.settings, tag, home, **fields)


@dataclass
class Pipeline:
    """One scenario's indexer and query worker (started by the launcher, pid files under its home)."""

    settings: Settings
    stack: Stack

    def pidfile(self, role: str) -> Path:
        return self.settings.home / "run" / f"{role}.pid"

    def identities(self) -> dict[str, faults.ProcessIdentity | None]:
        return {role: faults.identity(self.pidfile(role)) for role in ("indexer", "query")}

    def log(self, role: str) -> Path:
        return self.stack.log_path(role)


def start_pipeline(settings: Settings) -> Pipeline:
    """Start both workers at once; when either fails to start, stop both (a worker that did start
    would outlive the scenario and take the cores from the next ones)."""
    stack = Stack(settings)
    try:
        with ThreadPoolExecutor(2) as pool:
            for fut in [pool.submit(stack.up, [role]) for role in ("indexer", "query")]:
                fut.result()
    except BaseException:
        stack.down(["indexer", "query"])
        raise
    return Pipeline(settings, stack)


def ensure_services(services: Services) -> None:
    """Restart the broker or the store if a scenario left one down (the next one needs both)."""
    services.stack.up(["kafka", "weaviate"])
