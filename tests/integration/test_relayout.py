"""Growing the partition count with ``freshet relayout``, against the real Kafka and Weaviate.

An indexer fills a 2-partition layout; the new topics are created and a producer publishes there;
the old indexer is drained and stopped; the relayout copies the layout to 4 partitions under new
names; an indexer on the new layout takes that edit and more edits, deletes and a stale event.
The index must then equal a fresh load of the new changes topic, the copied documents must not
have been embedded again, and every state must sit in the partition its document's events go to.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from freshet.client import AppliedWatcher, DocumentPublisher, read_to_end, wanted_versions
from freshet.publishing import publish_events
from freshet.relayout import RelayoutRefusedError, create_topics, layout_of, relayout, report, undrained
from freshet.settings import Settings
from freshet.verify import read_states, run_verify, state_topic
from ops.stack import Stack, drop_pipeline, isolated
from schemas.change import ChangeEvent
from tests.integration.conftest import Endpoints, make_settings
from workers.delivery import POSITION_PREFIX
from workers.relayout import Plan, partition_of

pytestmark = pytest.mark.integration


def note(i: int, version: int) -> ChangeEvent:
    """Four paragraphs, each a chunk of its own with text no other note has; a version rewrites the second."""
    paragraphs = [f"Paragraph {j} of note {i} describes subject number {100 * i + j}, with enough words around "
                  f"it to stand alone as one chunk of the document and be embedded by itself." for j in range(4)]
    paragraphs[1] = f"Note {i} in its revision {version}: " + paragraphs[1]
    return ChangeEvent(doc_id=f"n/{i}.md", op="upsert", version=version,
                       content=f"# Note {i}\n\n" + "\n\n".join(paragraphs))


def delete(i: int, version: int) -> ChangeEvent:
    return ChangeEvent(doc_id=f"n/{i}.md", op="delete", version=version)


@pytest.fixture
def layouts(endpoints: Endpoints, tmp_path: Path) -> Iterator[tuple[Settings, Settings]]:
    """A 2-partition pipeline and the settings of its 4-partition successor (new topics, group prefix,
    home and ports; the same Weaviate collection); both dropped afterwards."""
    old = make_settings(endpoints, tmp_path / "old")
    new = isolated(old, f"test-{uuid.uuid4().hex[:10]}", tmp_path / "new", topic_partitions=4,
                   collection=old.collection)
    try:
        yield old, new
    finally:
        Stack(new).down(["indexer"])
        Stack(old).down(["indexer"])
        drop_pipeline(new)
        with contextlib.suppress(Exception):  # the collection is gone with the new layout's
            drop_pipeline(old)


def wait_drained(settings: Settings, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while (lag := undrained(settings)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not lag, lag


def relayout_when_stopped(old: Settings, new: Settings, timeout: float = 30.0) -> Plan:
    """The relayout, retried while the stopped indexer's group still lists it (it leaves as it stops)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return relayout(old, layout_of(new))
        except RelayoutRefusedError as exc:
            if "still run" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(1)


def fill_old_layout(old: Settings) -> None:
    """Versions, explicit deletes and a tombstone, applied by the old indexer, which is then drained."""
    first = [note(i, 1) for i in range(12)] + [note(i, 2) for i in range(6)] + [delete(10, 2)]
    watcher = AppliedWatcher(old.bootstrap_servers, old.topic_applied)
    try:
        publish_events(old, first, wait=False, timeout=0)
        publisher = DocumentPublisher(old.bootstrap_servers, old.topic_changes)
        publisher.delete("n/11.md").result(30)
        publisher.close()
        assert watcher.wait(wanted_versions(first), 120), "the old indexer did not apply every event"
    finally:
        watcher.close()
    wait_drained(old)


def edit_new_layout(new: Settings) -> int:
    """Edits, deletes, a re-create and a stale event on the new changes topic; returns the events that
    are not stale (what the new indexer must apply, with the early edit of :func:`switch_producers`)."""
    edits = [note(i, 3) for i in range(1, 4)] + [delete(4, 3), note(10, 4), note(20, 1)]
    watcher = AppliedWatcher(new.bootstrap_servers, new.topic_applied)
    try:
        publish_events(new, [*edits, note(6, 1)], wait=False, timeout=0)  # n/6 v1: older than the copied v2
        publisher = DocumentPublisher(new.bootstrap_servers, new.topic_changes)
        publisher.delete("n/5.md").result(30)
        publisher.close()
        assert watcher.wait(wanted_versions(edits), 120), "the new indexer did not apply every edit"
    finally:
        watcher.close()
    wait_drained(new)
    return len(edits) + 2  # the tombstone of n/5, the early edit of n/0


def switch_producers(old: Settings, new: Settings) -> None:
    """Step 1: the new topics are created and a producer publishes an edit there before the relayout."""
    created = create_topics(old, layout_of(new))
    assert sorted(created) == sorted([new.topic_changes, new.topic_applied, state_topic(new)])
    publish_events(new, [note(0, 3)], wait=False, timeout=0)


def embedded_for(keys: list[str], before: dict[str, Any], after: dict[str, Any]) -> int:
    """Chunks an indexer that knew ``before`` had to embed to reach ``after`` for these documents."""
    return sum(len(set(after[k].chunk_ids) - set(before[k].chunk_ids if k in before and not before[k].deleted
                                                 else [])) for k in keys)


def assert_states_where_their_events_go(settings: Settings) -> None:
    for r in read_to_end(settings.bootstrap_servers, state_topic(settings)):
        key = json.loads(r.key)
        if key.startswith(POSITION_PREFIX) or r.value is None:
            continue
        assert r.partition == partition_of(key, settings.topic_partitions), key
        assert json.loads(r.value)["partition"] == r.partition, key


def test_a_relayout_to_more_partitions_embeds_nothing_again(layouts: tuple[Settings, Settings],
                                                            record_property: Any) -> None:
    old, new = layouts
    started = time.monotonic()
    Stack(old).up(["indexer"])
    fill_old_layout(old)
    switch_producers(old, new)
    with pytest.raises(RelayoutRefusedError, match="old layout still run"):
        relayout(old, layout_of(new))
    Stack(old).down(["indexer"])
    plan = relayout_when_stopped(old, new)
    assert plan.summary() == {"states_copied": 12, "applied_copied": 12, "changes_copied": 11, "states_kept": 0,
                              "applied_kept": 0, "changes_kept": 1, "changes_missing": 0}  # n/0 is there already
    lines = report(old, layout_of(new), plan, dry_run=False)
    assert any("local worker state of the old layout" in line for line in lines), lines  # old/workers/indexer
    again = relayout(old, layout_of(new)).summary()
    assert (again["states_copied"], again["applied_copied"], again["changes_copied"]) == (0, 0, 0), again
    assert_states_where_their_events_go(new)

    Stack(new).up(["indexer"])
    applied = edit_new_layout(new)
    with pytest.raises(RelayoutRefusedError, match="new layout already run"):
        relayout(old, layout_of(new))
    stats = httpx.get(f"{new.indexer_base_url}/stats", timeout=10).json()
    states_before, states_after = read_states(old), read_states(new)
    upserted = [f"n/{i}.md" for i in (0, 1, 2, 3, 10, 20)]  # n/0 v3 was published before the relayout
    record_property("new_indexer_stats", stats)
    record_property("seconds", round(time.monotonic() - started, 1))
    print(f"relayout copied {plan.summary()}; the new indexer: {stats}")
    assert stats["events_applied"] == applied, stats  # the 11 copies (and the stale n/6 v1) are not applied
    assert stats["stale_skipped"] >= len(plan.changes) + 1, stats
    assert stats["chunks_embedded"] == embedded_for(upserted, states_before, states_after), stats
    assert_states_where_their_events_go(new)
    assert run_verify(new, vectors=True) == []
