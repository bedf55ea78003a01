"""`freshet verify` against a real pipeline: passes on a faithful index, catches tampering."""

from __future__ import annotations

import pytest

from freshet.settings import Settings
from freshet.verify import run_verify
from schemas.change import ChangeEvent
from tests.integration.helpers import publish_and_wait, send_raw, stored
from workers.weaviate_store import sync_client

pytestmark = pytest.mark.integration

BODY = "# Rivers\n\n" + "\n\n".join(f"Paragraph {i} about meanders, oxbow lakes and floodplains. " * 3
                                     for i in range(5))


def test_verify_passes_then_catches_a_missing_chunk(pipeline: Settings) -> None:
    publish_and_wait(pipeline, [
        ChangeEvent(doc_id="r/a.md", op="upsert", version=1, content=BODY),
        ChangeEvent(doc_id="r/b.md", op="upsert", version=1, content=BODY.replace("Rivers", "Streams")),
        ChangeEvent(doc_id="r/a.md", op="upsert", version=2, content=BODY + "\n\nA new closing paragraph."),
        ChangeEvent(doc_id="r/c.md", op="upsert", version=1, content="# Gone\n\nSoon deleted."),
    ])
    send_raw(pipeline, pipeline.topic_changes, b"r/c.md", None)  # a tombstone
    publish_and_wait(pipeline, [ChangeEvent(doc_id="r/b.md", op="upsert", version=1, content="stale, skipped")])
    assert run_verify(pipeline, vectors=True) == []

    victim = next(iter(stored(pipeline, "r/a.md")))
    client = sync_client(pipeline.weaviate_host, pipeline.weaviate_http_port, pipeline.weaviate_grpc_port)
    try:
        client.collections.use(pipeline.collection).data.delete_by_id(victim)
    finally:
        client.close()
    problems = run_verify(pipeline)
    assert len(problems) == 1 and "'r/a.md'" in problems[0] and "lacks 1" in problems[0]
