"""A rewritten document stays searchable for a query worker whose applied view lags.

The query worker admits a hit only when its chunk belongs to the version its applied view names.
A worker that has not yet read a document's new applied record still admits only the old chunks,
so deleting those as soon as the record is out (as freshet once did) made the document vanish from
that worker until its view caught up. The indexer now deletes them ``delete_grace_seconds`` later.

The lagging worker here is the query worker's own :class:`Searcher` over the real Weaviate, with an
applied view deliberately held at the first version. With no grace period the same check fails,
which the second case shows: the test can tell the two designs apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from freshet.client import AppliedWatcher, wanted_versions
from freshet.settings import Settings
from ops.stack import Stack, drop_pipeline
from schemas.applied import parse_applied
from schemas.change import ChangeEvent
from schemas.search import SearchRequest
from tests.integration.conftest import make_settings
from tests.integration.helpers import publish_and_wait, read_topic, stored
from workers.applied_view import AppliedView
from workers.embedding import SentenceTransformerEmbedder
from workers.search import Searcher
from workers.stats import QueryStats
from workers.weaviate_store import WeaviateChunkStore

pytestmark = pytest.mark.integration

GRACE = 20.0
V1 = ("# Lighthouse keeping\n\nThe keeper trims the lamp wick at dusk and winds the clockwork that turns the lens "
      "through the night.\n\nStorms bring salt spray up to the gallery, so the glass is washed every morning.")
V2 = ("# Lighthouse automation\n\nAn electric beacon replaced the oil lamp, and a photocell now switches it on "
      "when daylight fades.\n\nA radio link reports faults to the harbour office, so nobody lives on the rock.")


@pytest.fixture(params=[GRACE, 0.0], ids=["with-grace", "without-grace"])
def indexer(request, endpoints, tmp_path: Path) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    base = make_settings(endpoints, tmp_path)
    settings = Settings(**{**base.model_dump(), "delete_grace_seconds": request.param})
    stack = Stack(settings)
    stack.up(["indexer"])
    yield settings
    stack.down(["indexer"])
    drop_pipeline(settings)


class LaggingWorker:
    """The query worker's search path over the real Weaviate, with an applied view fed by hand."""

    def __init__(self, settings: Settings, view: AppliedView) -> None:
        self._store = WeaviateChunkStore(host=settings.weaviate_host, http_port=settings.weaviate_http_port,
                                         grpc_port=settings.weaviate_grpc_port, collection=settings.collection)
        self._searcher = Searcher(SentenceTransformerEmbedder(), self._store, view, QueryStats(), metadata_schema={})
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._searcher.start())  # connects and loads the model up front

    def search(self, query: str) -> list[str]:
        """Doc ids of the hits this worker returns for ``query``."""
        request = SearchRequest(request_id="lag", query=query, mode="hybrid", top_k=5)
        reply = self._loop.run_until_complete(self._searcher.search(request))
        return [h.doc_id for h in reply.hits]

    def close(self) -> None:
        self._loop.run_until_complete(self._store.close())
        self._loop.close()


def test_a_lagging_query_worker_still_finds_a_document_being_rewritten(indexer: Settings) -> None:
    grace = indexer.delete_grace_seconds
    first = ChangeEvent(doc_id="light.md", op="upsert", version=1, content=V1)
    publish_and_wait(indexer, [first])
    [v1_record] = read_topic(indexer, indexer.topic_applied, where=lambda r: r.key == b"light.md")
    view = AppliedView()
    view.apply(parse_applied(v1_record.value))  # this worker's view stops here: it lags behind version 2
    v1_chunks = set(stored(indexer, "light.md"))

    lagging = LaggingWorker(indexer, view)
    watcher = AppliedWatcher(indexer.bootstrap_servers, indexer.topic_applied)
    second = ChangeEvent(doc_id="light.md", op="upsert", version=2, content=V2)
    try:
        publish_and_wait(indexer, [second])
        applied_at = time.monotonic()
        assert watcher.wait(wanted_versions([second]), 30)
    finally:
        watcher.close()
    if grace == 0:  # the old chunks go right after the applied record: wait until they have
        deadline = time.monotonic() + 30
        while v1_chunks & set(stored(indexer, "light.md")) and time.monotonic() < deadline:
            time.sleep(0.2)

    try:
        found = lagging.search("lighthouse keeper trims the lamp at dusk")
    finally:
        lagging.close()
    within_grace = time.monotonic() - applied_at < grace
    if grace > 0:
        assert within_grace, "the search came too late to test the grace period"
        assert "light.md" in found, "a query worker one version behind lost the document while it was rewritten"
        deadline = time.monotonic() + grace + 15  # and after the grace period the old chunks do go
        while v1_chunks & set(stored(indexer, "light.md")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not v1_chunks & set(stored(indexer, "light.md")), "old chunks outlived the grace period"
        assert len(stored(indexer, "light.md")) == 2
    else:
        assert "light.md" not in found, "without a grace period the lagging worker should lose the document"
