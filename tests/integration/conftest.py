"""Fixtures of the integration tier: a real Kafka broker and a real Weaviate server.

Where they come from, in order: the environment (``FRESHET_KAFKA_BOOTSTRAP`` and
``FRESHET_WEAVIATE_HOST`` both set); testcontainers, when a Docker daemon answers; otherwise the
project's own local stack (``ops/stack.py``), started once for the run if it is not already up and
stopped at the end if the run started it. Each test gets its own topics, collection and consumer
groups (``pipeline_settings``), so tests never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from freshet.settings import WEAVIATE_VERSION, Settings
from ops.stack import Stack, drop_pipeline
from ops.stack import isolated as isolated_settings

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Endpoints:
    bootstrap: str
    weaviate_host: str
    http_port: int
    grpc_port: int


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no usable daemon"
        return False


@contextmanager
def _containers() -> Iterator[Endpoints]:
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.weaviate import WeaviateContainer

    with KafkaContainer("confluentinc/cp-kafka:7.9.0").with_kraft() as kafka, \
            WeaviateContainer(f"cr.weaviate.io/semitechnologies/weaviate:{WEAVIATE_VERSION.lstrip('v')}") as wv:
        yield Endpoints(kafka.get_bootstrap_server(), wv.get_container_host_ip(),
                        int(wv.get_exposed_port(8080)), int(wv.get_exposed_port(50051)))


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    base = Settings()
    if os.environ.get("FRESHET_KAFKA_BOOTSTRAP") and os.environ.get("FRESHET_WEAVIATE_HOST"):
        yield Endpoints(base.bootstrap_servers, base.weaviate_host, base.weaviate_http_port, base.weaviate_grpc_port)
        return
    if _docker_answers():
        with _containers() as ep:
            yield ep
        return
    stack = Stack(Settings(home=REPO / ".freshet"))
    if stack.shape.secure:
        pytest.exit("the local stack in .freshet is the secured one (make up SECURE=1); the integration tests "
                    "start a secured stack of their own and need the plain one here: `make clean` first (or run "
                    "them from another clone)", returncode=2)
    started = [s for s in ("kafka", "weaviate") if not stack.healthy(s)]
    stack.up(["kafka", "weaviate"])
    yield Endpoints(base.bootstrap_servers, base.weaviate_host, base.weaviate_http_port, base.weaviate_grpc_port)
    if started and not os.environ.get("FRESHET_KEEP_STACK"):
        stack.down(started)


def make_settings(ep: Endpoints, home: Path) -> Settings:
    """Settings of an isolated pipeline: unique topics, collection, consumer groups and ports."""
    base = Settings(kafka_bootstrap=ep.bootstrap, weaviate_host=ep.weaviate_host, weaviate_http_port=ep.http_port,
                    weaviate_grpc_port=ep.grpc_port)
    return isolated_settings(base, f"test-{uuid.uuid4().hex[:10]}", home, topic_partitions=2, index_linger_seconds=0.2,
                    start_timeout_seconds=180, max_document_bytes=200_000,
                    delete_grace_seconds=0)  # old chunks go at once; test_grace.py covers the grace period


@pytest.fixture(scope="module")
def pipeline(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running indexer and query worker on their own topics and collection, for one module."""
    settings = make_settings(endpoints, tmp_path_factory.mktemp("pipeline"))
    stack = Stack(settings)
    try:
        stack.up(["indexer", "query"])
        yield settings
    finally:
        stack.down(["indexer", "query"])
        drop_pipeline(settings)


@pytest.fixture
def isolated(endpoints: Endpoints, tmp_path: Path) -> Iterator[Settings]:
    """Settings with their own collection and topics, no workers; cleaned up afterwards."""
    settings = make_settings(endpoints, tmp_path)
    yield settings
    drop_pipeline(settings)


@pytest.fixture
def indexer_only(endpoints: Endpoints, tmp_path: Path) -> Iterator[Settings]:
    """An indexer (no query worker) on its own topics and collection, for one test."""
    settings = make_settings(endpoints, tmp_path)
    stack = Stack(settings)
    stack.up(["indexer"])
    yield settings
    stack.down(["indexer"])
    drop_pipeline(settings)
