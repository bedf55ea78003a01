"""The query worker's search path run in the test process, over the real Kafka and Weaviate.

:class:`InProcessWorker` builds the worker's own :class:`~workers.search.Searcher` with a live
:class:`~workers.applied_view.AppliedView` fed from the applied topic by
:func:`~workers.log_reader.follow_topic`, in a task on the same event loop, as
``streams/query.py`` does; the loop runs in a thread of its own so test threads can search
concurrently. Given a view subclass, the one thing that differs from the real worker is that
view: :class:`AdmitAllView` turns admission off, to show what the consistency checks catch then.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from freshet.settings import Settings
from schemas.applied import parse_applied
from schemas.search import SearchReply, SearchRequest
from workers.applied_view import AppliedView
from workers.embedding import SentenceTransformerEmbedder
from workers.log_reader import LogRecord, follow_topic
from workers.search import Searcher
from workers.stats import QueryStats
from workers.store import StoredHit
from workers.weaviate_store import WeaviateChunkStore


class AdmitAllView(AppliedView):
    """An applied view that admits every hit: admission switched off.

    Each hit is labelled as the real worker labels it, with the view's version of its document;
    a document the view does not know yet gets the ``version`` property stored with the chunk.
    """

    def admit(self, hits: Sequence[StoredHit]) -> list[tuple[StoredHit, int]]:
        out: list[tuple[StoredHit, int]] = []
        for h in hits:
            doc = self.doc(str(h.properties.get("tenant") or "") or None, str(h.properties.get("doc_id", "")))
            stored = h.properties.get("version")
            out.append((h, doc.version if doc is not None else stored if isinstance(stored, int) else -1))
        return out


class InProcessWorker:
    """A query worker's :class:`Searcher` and applied-view feed on an event loop in a thread."""

    def __init__(self, settings: Settings, view: AppliedView) -> None:
        self._settings = settings
        self.view = view
        self._store = WeaviateChunkStore(host=settings.weaviate_host, http_port=settings.weaviate_http_port,
                                         grpc_port=settings.weaviate_grpc_port, collection=settings.collection)
        self._searcher = Searcher(SentenceTransformerEmbedder(settings.model), self._store, view, QueryStats(),
                                  metadata_schema={}, overfetch=settings.query_overfetch)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="inprocess-worker")
        self._feed: asyncio.Task[None] | None = None

    def start(self, timeout: float = 120.0) -> None:
        """Connect, load the model and follow the applied topic until caught up."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout)

    async def _start(self) -> None:
        await self._searcher.start()
        caught_up = asyncio.Event()
        self._feed = asyncio.create_task(follow_topic(
            self._settings.bootstrap_servers, self._settings.topic_applied, self._on_applied, caught_up))
        await caught_up.wait()

    def _on_applied(self, records: list[LogRecord]) -> None:  # as streams/query.py's on_applied
        for r in records:
            if r.value is not None:
                self.view.apply(parse_applied(r.value))
        self.view.notify()

    def search(self, request: SearchRequest, timeout: float = 60.0) -> SearchReply:
        """Answer ``request`` as the query worker would (waiting for its fence first)."""
        return asyncio.run_coroutine_threadsafe(self._searcher.search(request), self._loop).result(timeout)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _stop(self) -> None:
        if self._feed is not None:
            self._feed.cancel()
            await asyncio.gather(self._feed, return_exceptions=True)
        await self._store.close()
