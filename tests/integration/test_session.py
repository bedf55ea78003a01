"""Two query workers share the request topic; a client with a session never reads back in time.

The client rewrites one document again and again and searches for it after each write through the
same :class:`Session`. Its requests are spread over two query workers (the request topic's
partitions are split between them), whose views move independently. Every reply must show the
document at the version just written (read-your-writes), so the versions it sees never go down,
and both workers must have answered.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from freshet.client import DocumentPublisher, SearchClient, Session
from freshet.settings import Settings
from ops import procs
from ops.stack import Stack, drop_pipeline
from schemas.change import ChangeEvent
from tests.integration.conftest import make_settings
from tests.integration.helpers import wait_healthy

pytestmark = pytest.mark.integration


@pytest.fixture
def two_query_workers(endpoints, tmp_path: Path) -> Iterator[tuple[Settings, Settings]]:  # type: ignore[no-untyped-def]
    base = make_settings(endpoints, tmp_path / "a")
    first = Settings(**{**base.model_dump(), "topic_partitions": 4})
    second = Settings(**{**first.model_dump(), "home": tmp_path / "b", "query_web_port": procs.free_port(),
                         "worker_instance": "query-2"})
    Stack(first).up(["indexer", "query"])
    env = {**os.environ, **second.as_env(), "PYTHONUNBUFFERED": "1"}
    log = second.home / "logs" / "query.log"
    procs.spawn([sys.executable, "-m", "freshet.cli", "worker", "query"], log=log,
                pidfile=second.home / "run" / "query.pid", env=env)
    wait_healthy(second.worker_url("query", "/healthz"), log)
    yield first, second
    Stack(second).down(["query"])
    Stack(first).down(["indexer", "query"])
    drop_pipeline(first)


def answered(settings: Settings) -> int:
    return int(httpx.get(settings.worker_url("query", "/stats"), timeout=5).json()["requests"])


def test_a_session_never_reads_back_in_time_across_two_query_workers(
        two_query_workers: tuple[Settings, Settings]) -> None:
    first, second = two_query_workers
    session = Session()
    publisher = DocumentPublisher(first.bootstrap_servers, first.topic_changes, session=session)
    client = SearchClient(first.bootstrap_servers, request_topic=first.topic_requests,
                          reply_topic=first.topic_replies, timeout=60, session=session)
    before = answered(first), answered(second)
    seen: list[int] = []
    try:
        for version in range(1, 25):
            content = (f"# Tide table\n\nRevision {version} of the tide table for the harbour of Saint-Malo, "
                       "with the times of high and low water for the coming week.")
            publisher.publish(ChangeEvent(doc_id="tides.md", op="upsert", version=version,
                                          content=content)).result(30)
            for request in range(2):  # several requests per write, so both workers get some
                reply = client.search("tide table harbour Saint-Malo", request_id=f"v{version}-{request}", top_k=3)
                assert reply.status == "ok", reply.error
                versions = {h.version for h in reply.hits if h.doc_id == "tides.md"}
                assert versions == {version}, f"after writing version {version} a reply showed {versions}"
                seen.append(version)
    finally:
        client.close()
        publisher.close()
    assert seen == sorted(seen)
    after = answered(first), answered(second)
    assert after[0] > before[0] and after[1] > before[1], f"one worker answered everything: {before} -> {after}"
