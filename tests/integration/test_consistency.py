"""Consistent reads against the real services: searching while documents are rewritten never
returns chunks of two versions of one document, and each hit names the version it belongs to."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from freshet.client import DocumentPublisher, SearchClient
from freshet.settings import Settings
from schemas.change import ChangeEvent
from schemas.search import SearchReply
from tests.integration.helpers import publish_and_wait

pytestmark = pytest.mark.integration

DOCS = ["kelp forest", "salt marsh", "coral reef", "tidal flat"]
VERSIONS = 12


def content(d: int, v: int) -> str:
    """Six paragraphs: the even ones change in every version, the odd ones every third version,
    so consecutive versions share some chunks and differ in others."""
    place = DOCS[d]
    paras = []
    for j in range(6):
        rev = v if j % 2 == 0 else v // 3
        paras.append(f"Field notes on the {place}, paragraph {j}, revision {rev}: the {place} shelters many "
                     f"species, and observers record the tides, the light and the water there ({j}/{rev}).")
    return "\n\n".join(paras)


def event(d: int, v: int) -> ChangeEvent:
    return ChangeEvent(doc_id=f"sea/{d}.txt", op="upsert", version=v, content=content(d, v), content_type="text/plain")


def test_no_reply_mixes_two_versions_of_a_document(pipeline: Settings) -> None:
    publish_and_wait(pipeline, [event(d, 1) for d in range(len(DOCS))])
    client = SearchClient(pipeline.bootstrap_servers, request_topic=pipeline.topic_requests,
                          reply_topic=pipeline.topic_replies, timeout=60)
    replies: list[SearchReply] = []
    done = threading.Event()

    def search_until_done(mode: str) -> None:
        i = 0
        while not done.is_set():
            place = DOCS[i % len(DOCS)]
            replies.append(client.search(f"field notes on the {place}, tides and light", mode=mode, top_k=40))
            i += 1

    searchers = [threading.Thread(target=search_until_done, args=(m,)) for m in ("vector", "hybrid", "keyword")]
    for t in searchers:
        t.start()
    publisher = DocumentPublisher(pipeline.bootstrap_servers, pipeline.topic_changes)
    try:
        for v in range(2, VERSIONS + 1):
            for d in range(len(DOCS)):
                publisher.publish(event(d, v))
            publisher.flush(30)
            time.sleep(0.4)
    finally:
        publisher.close()
    publish_and_wait(pipeline, [event(d, VERSIONS) for d in range(len(DOCS))])  # replays: already applied
    time.sleep(1)
    done.set()
    for t in searchers:
        t.join(timeout=120)
    client.close()

    seen_versions: set[int] = set()
    checked = 0
    for reply in replies:
        assert reply.status == "ok", reply.error
        by_doc: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for h in reply.hits:
            by_doc[h.doc_id].append((h.version, h.text))
        for doc_id, hits in by_doc.items():
            d = int(doc_id.split("/")[1].split(".")[0])
            versions = {v for v, _ in hits}
            assert len(versions) == 1, f"{doc_id}: one reply names versions {sorted(versions)}"
            [v] = versions
            text = content(d, v)
            foreign = [t for _, t in hits if t not in text]
            assert not foreign, f"{doc_id}: chunks not of version {v} in one reply: {foreign[:2]}"
            seen_versions.add(v)
            checked += 1
    assert len(replies) >= 30 and checked >= 60, f"only {len(replies)} replies, {checked} document checks"
    assert len(seen_versions) >= 3, f"searches saw versions {sorted(seen_versions)} only; not during the rewrites"
