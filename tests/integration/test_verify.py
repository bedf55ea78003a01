"""`freshet verify` against a real pipeline: passes on a faithful index, catches tampering."""

from __future__ import annotations

import uuid

import pytest

from freshet.client import SearchClient
from freshet.settings import Settings
from freshet.verify import run_repair, run_verify
from schemas.change import ChangeEvent
from tests.integration.helpers import publish_and_wait, send_raw, stored
from workers.weaviate_store import VECTOR_NAME, sync_client

pytestmark = pytest.mark.integration

BODY = "# Rivers\n\n" + "\n\n".join(f"Paragraph {i} about meanders, oxbow lakes and floodplains. " * 3
                                     for i in range(5))


SHARED = "Oxbow lakes form when a river cuts through the narrow neck of a meander and the old loop is left behind."
UNIQUE = "The axolotl keeps its gills for life and lives only in the lakes and canals around Xochimilco, Mexico."
DELTA = "# Deltas\n\nA delta grows where a river slows at the sea and drops the sand and silt it carried so far.\n\n"
ESTUARY = "# Estuaries\n\nIn an estuary the tide pushes salt water upstream twice a day under the fresh river water."


def _search_axolotl(client: SearchClient) -> list[str]:
    reply = client.search("axolotl gills Xochimilco", mode="keyword", top_k=3)
    assert reply.status == "ok", reply.error
    return [h.doc_id for h in reply.hits]


def test_repair_rewrites_lost_chunks_reusing_stored_vectors_and_deletes_strays(pipeline: Settings) -> None:
    """Runs first in this module and leaves the index clean for the test after it."""
    publish_and_wait(pipeline, [
        ChangeEvent(doc_id="fix/a.md", op="upsert", version=1, content=DELTA + SHARED),
        ChangeEvent(doc_id="fix/b.md", op="upsert", version=1, content=ESTUARY + "\n\n" + SHARED),
        ChangeEvent(doc_id="fix/a.md", op="upsert", version=2, content=DELTA + SHARED + "\n\n" + UNIQUE),
        ChangeEvent(doc_id="fix/c.md", op="upsert", version=1, content=ESTUARY),
        ChangeEvent(doc_id="fix/c.md", op="delete", version=2),
    ])
    assert run_verify(pipeline) == []
    client = SearchClient(pipeline.bootstrap_servers, request_topic=pipeline.topic_requests,
                          reply_topic=pipeline.topic_replies, timeout=60)
    wv = sync_client(pipeline.weaviate_host, pipeline.weaviate_http_port, pipeline.weaviate_grpc_port)
    try:
        assert _search_axolotl(client)[:1] == ["fix/a.md"]
        # Weaviate loses two chunks of a (one whose text b still stores, one nobody does) and gains strays
        lost = [i for i, p in stored(pipeline, "fix/a.md").items() if p["text"] in (SHARED, UNIQUE)]
        assert len(lost) == 2
        coll = wv.collections.use(pipeline.collection)
        for i in lost:
            coll.data.delete_by_id(i)
        for doc_id in ("fix/a.md", "fix/c.md", "fix/ghost.md"):  # an older version, a deleted and an unknown doc
            coll.data.insert({"doc_id": doc_id, "tenant": "", "content_hash": f"stray-{doc_id}", "text": "stray"},
                             uuid=uuid.uuid4(), vector={VECTOR_NAME: [0.05] * 384})
        problems = run_verify(pipeline)
        assert len(problems) == 3 and "lacks 2" in " ".join(problems), problems
        assert "fix/a.md" not in _search_axolotl(client)

        report = run_repair(pipeline)
        assert report.problems == problems and report.skipped == []
        assert (report.rewritten, report.deleted) == (2, 3)
        assert (report.reused, report.cached, report.embedded) == (1, 0, 1)  # the shared text's vector came from b
        assert run_verify(pipeline, vectors=True) == []  # the rewritten vectors equal fresh embeddings
        assert set(stored(pipeline, "fix/a.md")) >= set(lost)
        assert _search_axolotl(client)[:1] == ["fix/a.md"]
    finally:
        wv.close()
        client.close()


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
