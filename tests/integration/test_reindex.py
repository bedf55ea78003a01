"""`freshet reindex` on a real pipeline: a new generation is built beside the active one while searches
keep being answered, every query worker switches to it, and the old collection goes after the grace."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from freshet.client import SearchClient
from freshet.reindex import run_reindex, status_lines
from freshet.settings import Settings
from freshet.verify import run_verify
from ops.stack import Stack, drop_pipeline
from schemas.change import ChangeEvent
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import publish_and_wait
from workers.generation import adopt, read_generations
from workers.weaviate_store import client_for

pytestmark = pytest.mark.integration

LONG = ("Paragraph {i} of {doc} is long enough to stay a chunk of its own under either chunker setting: it tells "
        "how rivers carry silt to the sea, how deltas grow, and how the tide pushes salt water upstream. ") * 3
SHORT = ("A note {i} on {doc}, a paragraph of its own while chunk_min_chars is 100, that joins the paragraph "
         "after it once chunk_min_chars is 400.")


def _doc(n: int) -> str:
    """Long paragraphs, the first unchanged by chunk_min_chars=400 (so its vector is reused), and
    shorter ones that it joins to the paragraph after them (so those chunks are embedded)."""
    parts = [f"# Document {n}"]
    for i in range(4):
        parts += [LONG.format(i=i, doc=n), SHORT.format(i=i, doc=n)]
    return "\n\n".join(parts)


@pytest.fixture
def pipeline(endpoints: Endpoints, tmp_path: Path) -> Settings:
    settings = make_settings(endpoints, tmp_path).model_copy(update={"generation_grace_seconds": 3.0})
    stack = Stack(settings)
    stack.up(["indexer", "query"])
    yield settings
    stack.down(["indexer", "query"])
    active, known = read_generations(settings)
    client = client_for(settings)
    try:
        for rec in known.values():
            client.collections.delete(rec.collection)
    finally:
        client.close()
    drop_pipeline(settings)


def test_reindex_switches_generation_with_no_error_reply_and_reuses_unchanged_vectors(pipeline: Settings) -> None:
    publish_and_wait(pipeline, [ChangeEvent(doc_id=f"doc-{n}.md", op="upsert", version=1, content=_doc(n))
                                for n in range(12)])
    replies: Counter[tuple[str, str | None]] = Counter()
    order: list[str | None] = []
    stop = threading.Event()

    def search_all_along() -> None:
        client = SearchClient(pipeline.kafka_access, request_topic=pipeline.topic_requests,
                              reply_topic=pipeline.topic_replies)
        try:
            while not stop.is_set():
                reply = client.search("how deltas grow where rivers meet the sea", mode="hybrid", top_k=3)
                replies[(reply.status, reply.generation)] += 1
                if not order or order[-1] != reply.generation:
                    order.append(reply.generation)
                time.sleep(0.05)
        finally:
            client.close()

    searcher = threading.Thread(target=search_all_along, daemon=True)
    searcher.start()

    def live_change() -> None:  # a change while the new generation is being built: it must reach it too
        time.sleep(5)
        publish_and_wait(pipeline, [ChangeEvent(doc_id="doc-live.md", op="upsert", version=1,
                                                content=_doc(99).replace("Document 99", "Live document"))])

    changer = threading.Thread(target=live_change, daemon=True)
    changer.start()
    report = run_reindex(pipeline, {"chunk_min_chars": "400"}, progress=False, timeout=600)
    changer.join(timeout=120)
    time.sleep(2)
    stop.set()
    searcher.join(timeout=30)

    assert report.switched and report.dropped, report
    errors = {k: n for k, n in replies.items() if k[0] != "ok"}
    assert not errors, f"error replies during the reindex: {errors} of {sum(replies.values())}"
    assert order == [None, report.generation], f"replies named generations in this order: {order}"
    assert replies[("ok", None)] > 5 and replies[("ok", report.generation)] > 5, replies
    # a chunker-only change: the long paragraphs keep their text, so their vectors are taken, not embedded
    assert report.chunks_reused > 0 and 0 < report.embedded_share < 1, report
    assert report.documents >= 13, report

    active, known = read_generations(pipeline)
    assert active is not None and active.generation == report.generation
    assert known[report.generation].state == "active"
    client = client_for(pipeline)
    try:
        assert not client.collections.exists(pipeline.collection), "the old generation's collection is still there"
        assert client.collections.exists(report.collection)
    finally:
        client.close()
    assert any(report.generation in line for line in status_lines(pipeline))
    current = adopt(pipeline, "indexer", active)
    assert current.chunk_min_chars == 400
    assert run_verify(current) == []  # the new generation is exactly a fresh load, the live change included
