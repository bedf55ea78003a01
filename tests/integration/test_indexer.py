"""The indexer against the real services: only what changed is embedded, nothing is lost or duplicated."""

from __future__ import annotations

import json

import pytest

from freshet.publishing import indexer_stats as stats
from freshet.settings import Settings
from schemas.change import ChangeEvent
from schemas.deadletter import REASON
from tests.integration.helpers import publish_and_wait, read_topic, send_raw, stored

pytestmark = pytest.mark.integration

PARAS = [f"Section {i} explains one idea about river deltas and the sediment they carry, " * 2 for i in range(4)]
DOC = "# Deltas\n\n" + "\n\n".join(PARAS)


def doc(version: int, content: str = DOC, doc_id: str = "geo/deltas.md", **extra: object) -> ChangeEvent:
    return ChangeEvent(doc_id=doc_id, op="upsert", version=version, content=content, **extra)  # type: ignore[arg-type]


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def test_an_edit_embeds_only_the_changed_chunk(pipeline: Settings) -> None:
    publish_and_wait(pipeline, [doc(1)])
    first = stored(pipeline, "geo/deltas.md")
    assert len(first) == 4
    before = stats(pipeline)
    publish_and_wait(pipeline, [doc(2, DOC.replace("Section 2 explains", "Section 2 now explains"))])
    d = delta(before, stats(pipeline))
    assert d["chunks_embedded"] == 1 and d["chunks_written"] == 1 and d["chunks_deleted"] == 1
    second = stored(pipeline, "geo/deltas.md")
    assert len(second) == 4 and len(set(first) & set(second)) == 3


def test_a_replay_changes_nothing(pipeline: Settings) -> None:
    publish_and_wait(pipeline, [doc(1, doc_id="geo/replay.md"), doc(2, DOC + "\n\nMore.", doc_id="geo/replay.md")])
    objects = stored(pipeline, "geo/replay.md")
    before = stats(pipeline)
    publish_and_wait(pipeline, [doc(1, doc_id="geo/replay.md"), doc(2, DOC + "\n\nMore.", doc_id="geo/replay.md")])
    d = delta(before, stats(pipeline))
    assert d.get("stale_skipped") == 2 and "chunks_embedded" not in d and "chunks_written" not in d
    assert stored(pipeline, "geo/replay.md") == objects


def test_identical_republish_writes_nothing(pipeline: Settings) -> None:
    publish_and_wait(pipeline, [doc(1, doc_id="geo/same.md")])
    before = stats(pipeline)
    publish_and_wait(pipeline, [doc(2, doc_id="geo/same.md")])
    d = delta(before, stats(pipeline))
    assert d.get("events_applied") == 1 and not {"chunks_embedded", "chunks_written", "chunks_deleted"} & set(d)


def test_a_metadata_change_updates_properties_without_embedding(pipeline: Settings) -> None:
    publish_and_wait(pipeline, [doc(1, doc_id="geo/meta.md", metadata={"lang": "en"}, title="Deltas")])
    before = stats(pipeline)
    publish_and_wait(pipeline, [doc(2, doc_id="geo/meta.md", metadata={"lang": "fr"}, title="Deltas")])
    d = delta(before, stats(pipeline))
    assert "chunks_embedded" not in d and d["chunks_updated"] == 4
    props = list(stored(pipeline, "geo/meta.md").values())
    assert {json.loads(p["metadata_json"])["lang"] for p in props} == {"fr"}


def test_a_title_change_re_embeds_only_the_first_chunk(pipeline: Settings) -> None:
    # FRESHET_EMBED_TITLE=first (the default): the model sees the title ahead of the first chunk only.
    publish_and_wait(pipeline, [doc(1, doc_id="geo/titled.md", title="Deltas")])
    before = stats(pipeline)
    publish_and_wait(pipeline, [doc(2, doc_id="geo/titled.md", title="Deltas (fr)")])
    d = delta(before, stats(pipeline))
    assert d["chunks_embedded"] == 1 and d["chunks_updated"] == 3
    props = list(stored(pipeline, "geo/titled.md").values())
    assert len(props) == 4 and {p["title"] for p in props} == {"Deltas (fr)"}


def test_delete_then_recreate_and_a_stale_delete(pipeline: Settings) -> None:
    publish_and_wait(pipeline, [doc(1, doc_id="geo/phoenix.md")])
    publish_and_wait(pipeline, [ChangeEvent(doc_id="geo/phoenix.md", op="delete", version=2)])
    assert stored(pipeline, "geo/phoenix.md") == {}
    publish_and_wait(pipeline, [doc(3, doc_id="geo/phoenix.md")])
    assert len(stored(pipeline, "geo/phoenix.md")) == 4
    publish_and_wait(pipeline, [ChangeEvent(doc_id="geo/phoenix.md", op="delete", version=2)])  # stale
    assert len(stored(pipeline, "geo/phoenix.md")) == 4


@pytest.mark.parametrize(("value", "reason"), [
    (b"\xc3\x28 invalid utf-8", "invalid_utf8"),
    (json.dumps({"doc_id": "x", "op": "upsert", "version": 1}).encode(), "missing_content"),
    (json.dumps({"doc_id": "x", "op": "upsert", "version": 1, "content": "x", "schema_version": "9"}).encode(),
     "unknown_schema_version"),
    (json.dumps({"doc_id": "x", "op": "upsert", "version": 1, "content": "x" * 300_000}).encode(), "oversized"),
])
def test_bad_input_is_dead_lettered_with_its_reason(pipeline: Settings, value: bytes, reason: str) -> None:
    key = f"bad/{reason}".encode()
    send_raw(pipeline, pipeline.topic_changes, key, value)
    publish_and_wait(pipeline, [doc(1, doc_id=f"bad/{reason}")])  # same key, same partition: it kept moving
    dead = read_topic(pipeline, pipeline.topic_dead_letter, where=lambda r: r.key == key)
    assert dict(dead[0].headers)[REASON] == reason.encode() and dead[0].value == value
