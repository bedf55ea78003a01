"""`freshet reindex` on a real pipeline: a new generation is built beside the active one while searches
keep being answered, every query worker switches to it, and the old collection goes after the grace."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from freshet.client import SearchClient
from freshet.errors import FreshetError
from freshet.reindex import ProgressReader, run_reindex, status_lines, stop_builders
from freshet.settings import Settings
from freshet.verify import run_verify
from ops import procs
from ops.stack import Stack, drop_pipeline
from schemas.change import ChangeEvent
from tests.integration.conftest import Endpoints, make_settings
from tests.integration.helpers import publish_and_wait
from workers.generation import adopt, generation_record, read_generations
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
def pipeline(endpoints: Endpoints, tmp_path: Path) -> Iterator[Settings]:
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
    with urllib.request.urlopen(f"http://127.0.0.1:{pipeline.query_web_port}/metrics", timeout=10) as resp:
        exposition = resp.read().decode()
    serving = [line for line in exposition.splitlines() if line.startswith("freshet_serving_generation{")]
    labels = f'collection="{report.collection}",generation="{report.generation}"'
    assert serving == [f"freshet_serving_generation{{{labels}}} 1.0"], serving
    current = adopt(pipeline, "indexer", active)
    assert current.chunk_min_chars == 400
    assert run_verify(current) == []  # the new generation is exactly a fresh load, the live change included


    # a model change (the int8 ONNX variant's vectors are a model of their own): nothing is reused, the
    # query workers load the new model before they switch, and searches are still answered throughout
    replies.clear()
    order.clear()
    stop.clear()
    searcher = threading.Thread(target=search_all_along, daemon=True)
    searcher.start()
    second = run_reindex(pipeline, {"model_backend": "onnx-int8"}, progress=False, timeout=600)
    time.sleep(2)
    stop.set()
    searcher.join(timeout=30)
    assert second.switched and second.previous == report.collection
    assert (second.chunks_reused, second.embedded_share) == (0, 1.0), second
    assert not {k: n for k, n in replies.items() if k[0] != "ok"}, replies
    assert order == [report.generation, second.generation], order
    active, _ = read_generations(pipeline)
    assert active is not None and active.generation == second.generation
    now = adopt(pipeline, "indexer", active)
    assert (now.model_backend, now.chunk_min_chars) == ("onnx-int8", 400)  # the chunker setting carried over
    assert run_verify(now) == []

    # back to the first reindex's settings: a generation retired before is built again from scratch,
    # not resumed from its old consumer groups, state and progress over a new, empty collection
    third = run_reindex(pipeline, {"model_backend": pipeline.model_backend}, progress=False, timeout=600)
    assert third.generation == report.generation and third.collection == report.collection
    assert third.switched and third.chunks_embedded + third.chunks_reused > 0 and third.documents >= 13, third
    active, known = read_generations(pipeline)
    assert active is not None and active.generation == report.generation and known[second.generation].state == "retired"
    again = adopt(pipeline, "indexer", active)
    assert run_verify(again) == []
    client = SearchClient(pipeline.kafka_access, request_topic=pipeline.topic_requests,
                          reply_topic=pipeline.topic_replies)
    try:
        reply = client.search("how deltas grow where rivers meet the sea", mode="vector", top_k=3)
    finally:
        client.close()
    assert reply.status == "ok" and reply.generation == report.generation and len(reply.hits) == 3, reply
    assert any("was retired before" in n for n in third.notes), third.notes


def test_a_reindex_whose_builder_is_killed_resumes_where_it_stopped(endpoints: Endpoints, tmp_path: Path) -> None:
    settings = make_settings(endpoints, tmp_path).model_copy(update={"index_batch_size": 2})
    stack = Stack(settings)
    stack.up(["indexer"])
    _, record = generation_record(settings, {"chunk_min_chars": 400}, names=settings, state="building",
                                  at=datetime.now(UTC))
    try:
        publish_and_wait(settings, [ChangeEvent(doc_id=f"doc-{n}.md", op="upsert", version=1, content=_doc(n))
                                    for n in range(16)])
        killed: list[int] = []

        def kill_mid_build() -> None:  # kill -9 the builder once it has handled some documents, not all
            reader = ProgressReader(settings, record.generation)
            try:
                deadline = time.monotonic() + 300
                while len(reader.documents) < 4 and time.monotonic() < deadline:
                    reader.poll()
            finally:
                reader.close()
            pid = procs.read_pid(settings.home / "reindex" / record.generation / "indexer-1.pid")
            if pid is not None and len(reader.documents) < 16:
                os.kill(pid, signal.SIGKILL)
                killed.append(len(reader.documents))

        killer = threading.Thread(target=kill_mid_build, daemon=True)
        killer.start()
        with pytest.raises(FreshetError, match="stopped"):
            run_reindex(settings, {"chunk_min_chars": "400"}, switch=False, progress=False, timeout=300)
        killer.join(timeout=60)
        assert killed and 4 <= killed[0] < 16, killed

        report = run_reindex(settings, {"chunk_min_chars": "400"}, switch=False, progress=False, timeout=300)
        assert report.generation == record.generation and not report.switched and report.documents == 16
        target = adopt(settings, "indexer", record)
        client = client_for(settings)
        try:
            stored_chunks = client.collections.use(target.collection).aggregate.over_all(total_count=True).total_count
        finally:
            client.close()
        # the resumed builder did not start over: it handled fewer chunks than the generation holds
        assert 0 < report.chunks_embedded + report.chunks_reused < (stored_chunks or 0), (report, stored_chunks)
        assert run_verify(target) == []
        assert any("caught up" in line for line in status_lines(settings))
    finally:
        stop_builders(settings, record.generation)
        stack.down(["indexer"])
        client = client_for(settings)
        try:
            client.collections.delete(record.collection)
        finally:
            client.close()
        drop_pipeline(settings)
