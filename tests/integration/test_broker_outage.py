"""A Kafka broker killed under a running indexer: no state is lost from the changelog.

Faust writes table changes with ``send_soon`` and only logs a failed send; later records still
land, so before states were written with acknowledgements a broker outage longer than the
producer's request timeout left the changelog without the states of the batch in flight (and a
position past them). This test runs a broker of its own, kills it (``kill -9``) while the
indexer works through a backlog, restarts it, and checks the changelog, Weaviate and the applied
topic against a fresh chunking (``freshet verify``).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from freshet.client import AppliedWatcher, wanted_versions
from freshet.publishing import publish_events
from freshet.settings import Settings
from freshet.verify import run_verify
from ops import procs
from ops.stack import Stack, drop_pipeline, isolated
from schemas.applied import AppliedRecord, parse_applied
from schemas.change import ChangeEvent, document_key
from tests.integration.conftest import make_settings
from tests.integration.helpers import records_now

pytestmark = pytest.mark.integration


def docs(n: int, version: int) -> list[ChangeEvent]:
    return [ChangeEvent(doc_id=f"b/{i}.md", op="upsert", version=version,
                        content=f"# Note {i}\n\n" + f"Broker outage note {i}, revision {version}. " * 8
                        + f"\n\nA second paragraph for note {i} at revision {version}, long enough to stand alone.")
            for i in range(n)]


def applied_count(settings: Settings, events: list[ChangeEvent]) -> int:
    """How many of ``events`` the applied topic shows at their version or later (read from its start)."""
    applied: dict[str, int] = {}
    for r in records_now(settings, settings.topic_applied):
        rec = parse_applied(r.value)
        if isinstance(rec, AppliedRecord):
            key = document_key(rec.tenant, rec.doc_id)
            applied[key] = max(rec.version, applied.get(key, -1))
    return sum(applied.get(k, -1) >= v for k, v in wanted_versions(events).items())


@pytest.fixture
def own_kafka(endpoints, tmp_path: Path) -> Iterator[tuple[Settings, Stack]]:  # type: ignore[no-untyped-def]
    """An indexer on a Kafka broker of this test's own (the shared Weaviate), with a short producer timeout."""
    base = make_settings(endpoints, tmp_path)
    port = procs.free_port()
    settings = isolated(base, f"test-{uuid.uuid4().hex[:10]}", tmp_path / "own", kafka_bootstrap="",
                        kafka_port=port, kafka_controller_port=procs.free_port(), kafka_request_timeout_seconds=5,
                        index_batch_size=16)
    stack = Stack(settings)
    stack.up(["kafka", "indexer"])
    yield settings, stack
    stack.down(["indexer"])
    drop_pipeline(settings)
    stack.down(["kafka"])


def test_a_killed_broker_loses_no_state(own_kafka: tuple[Settings, Stack]) -> None:
    settings, stack = own_kafka
    events = docs(320, 1)  # one event per document: a state lost in the outage is never written again
    publish_events(settings, events, wait=False, timeout=0)
    watcher = AppliedWatcher(settings.bootstrap_servers, settings.topic_applied)
    try:
        deadline = time.monotonic() + 120
        while watcher.count_applied(wanted_versions(events)) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        applied_before = watcher.count_applied(wanted_versions(events))
        assert applied_before < len(events) // 2, "the backlog was done before the broker could be killed"
    finally:
        watcher.close()
    pid = procs.read_pid(settings.home / "run" / "kafka.pid")
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    time.sleep(12)  # over twice the producer's request timeout: sends in flight fail
    stack.up(["kafka"])
    deadline = time.monotonic() + 240
    while (done := applied_count(settings, events)) < len(events):  # from the topic's start: nothing missed
        assert time.monotonic() < deadline, f"only {done} of {len(events)} applied after the broker came back"
        time.sleep(2)
    log = (settings.home / "logs" / "indexer.log").read_text(encoding="utf-8")
    # A send in flight when the broker died: freshet retried it, or (idempotent producer) aiokafka did
    assert "transient_fault_retrying" in log or "Got error produce response" in log, (
        "no send was in flight during the outage: the test did not test it")
    assert run_verify(settings) == []
