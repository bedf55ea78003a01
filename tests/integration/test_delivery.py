"""At-least-once delivery against the real services: a killed indexer and an absent Weaviate lose nothing."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from freshet.client import AppliedWatcher, wanted_versions
from freshet.publishing import publish_events
from freshet.settings import Settings
from freshet.verify import run_verify
from ops import procs
from ops.stack import Stack, isolated
from schemas.change import ChangeEvent
from tests.integration.conftest import make_settings
from tests.integration.helpers import records_now

pytestmark = pytest.mark.integration


def docs(n: int, version: int = 1, prefix: str = "d") -> list[ChangeEvent]:
    return [ChangeEvent(doc_id=f"{prefix}/{i}.md", op="upsert", version=version,
                        content=f"# Note {i}\n\n" + f"Paragraph about topic {i} and its version {version}. " * 6)
            for i in range(n)]


def publish(settings: Settings, events: list[ChangeEvent]) -> None:
    publish_events(settings, events, wait=False, timeout=0)


def test_a_killed_indexer_resumes_and_the_index_equals_a_clean_run(indexer_only: Settings,
                                                                   record_property: Any) -> None:
    events = docs(40) + docs(40, version=2)
    watcher = AppliedWatcher(indexer_only.bootstrap_servers, indexer_only.topic_applied)
    try:
        publish(indexer_only, events)
        deadline = time.monotonic() + 120
        while watcher.count_applied(wanted_versions(docs(40))) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = procs.read_pid(indexer_only.home / "run" / "indexer.pid")
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)  # mid-stream, no chance to commit or flush anything
        time.sleep(2)  # what was in flight reaches the watcher; nothing more can be applied now
        # events covered at the kill: a document applied at version 2 covers both of its events
        at_kill = (watcher.count_applied(wanted_versions(docs(40)))
                   + watcher.count_applied(wanted_versions(docs(40, version=2))))
        assert 5 <= at_kill < len(events), f"the kill did not interrupt unfinished work ({at_kill} of " \
                                          f"{len(events)} applied)"
        Stack(indexer_only).up(["indexer"])
        assert watcher.wait(wanted_versions(events), 180), "not every event was applied after the restart"
    finally:
        watcher.close()
    stats = httpx.get(f"{indexer_only.indexer_base_url}/stats", timeout=10).json()
    record_property("applied_at_kill", at_kill)
    record_property("read_back_after_restart", stats["read_back"])
    print(f"kill -9 after {at_kill} of {len(events)} events applied; the restarted indexer applied "
          f"{stats['events_applied']}, read back {stats['read_back']} skipped record(s), skipped "
          f"{stats['stale_skipped']} stale")
    assert stats["events_applied"] + stats["stale_skipped"] >= len(events) - at_kill, stats
    assert run_verify(indexer_only, vectors=True) == []


@pytest.fixture
def own_weaviate(endpoints, tmp_path: Path) -> Iterator[tuple[Settings, Stack]]:  # type: ignore[no-untyped-def]
    """An indexer on a Weaviate server of this test's own, which the test stops and starts."""
    base = make_settings(endpoints, tmp_path)
    settings = isolated(base, f"test-{uuid.uuid4().hex[:10]}", tmp_path / "own", weaviate_host="127.0.0.1",
                        weaviate_http_port=procs.free_port(), weaviate_grpc_port=procs.free_port(),
                        index_linger_seconds=0.2)
    stack = Stack(settings)
    stack.up(["weaviate", "indexer"])
    yield settings, stack
    stack.down(["indexer", "weaviate"])


def test_an_absent_weaviate_is_waited_out_and_nothing_is_lost(own_weaviate: tuple[Settings, Stack]) -> None:
    settings, stack = own_weaviate
    watcher = AppliedWatcher(settings.bootstrap_servers, settings.topic_applied)
    try:
        publish(settings, docs(3, prefix="before"))
        assert watcher.wait(wanted_versions(docs(3, prefix="before")), 60)
        stack.down(["weaviate"])
        publish(settings, docs(5, prefix="during"))
        assert not watcher.wait(wanted_versions(docs(5, prefix="during")), 8), "applied without Weaviate?"
        stack.up(["weaviate"])
        assert watcher.wait(wanted_versions(docs(5, prefix="during")), 180), "the indexer did not resume"
    finally:
        watcher.close()
    assert run_verify(settings) == []
    assert "transient_fault_retrying" in (settings.home / "logs" / "indexer.log").read_text()
    assert not records_now(settings, settings.topic_dead_letter), "an event was dead-lettered for an outage"
