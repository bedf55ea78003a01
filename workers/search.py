"""Search: answering a :class:`~schemas.search.SearchRequest` from the store."""

from __future__ import annotations

import time

from freshet.errors import FreshetError
from schemas.search import Hit, ReplyError, SearchReply, SearchRequest, Timings
from workers.embedding import Embedder, embed_off_loop
from workers.store import ChunkStore, StoredHit, StoreQuery


def to_hit(h: StoredHit) -> Hit:
    p = h.properties
    tenant = str(p.get("tenant") or "") or None
    return Hit(
        doc_id=str(p.get("doc_id", "")), chunk_id=h.id, score=h.score,
        title=str(p.get("title") or "") or None,
        heading_path=[str(x) for x in p.get("heading_path") or []],  # type: ignore[attr-defined]
        text=str(p.get("text", "")), version=int(p.get("version", 0)),  # type: ignore[call-overload]
        tenant=tenant,
    )


def error_reply(request_id: str, code: str, message: str) -> SearchReply:
    return SearchReply(request_id=request_id, status="error", error=ReplyError(code=code, message=message))


class Searcher:
    """Embeds the query (unless keyword mode) and searches the store."""

    def __init__(self, embedder: Embedder, store: ChunkStore) -> None:
        self._embedder = embedder
        self._store = store

    async def start(self) -> None:
        """Connect the store and load the model (off the loop) before the first request."""
        await self._store.start()
        await embed_off_loop(self._embedder, ["warm-up"])

    async def search(self, req: SearchRequest) -> SearchReply:
        t0 = time.perf_counter()
        vector = None
        if req.mode != "keyword":
            vector = (await embed_off_loop(self._embedder, [req.query]))[0]
        t1 = time.perf_counter()
        hits = await self._store.search(StoreQuery(
            mode=req.mode, text=req.query, vector=vector, limit=req.top_k, alpha=req.alpha, tenant=req.tenant,
        ))
        t2 = time.perf_counter()
        return SearchReply(
            request_id=req.request_id, status="ok", hits=[to_hit(h) for h in hits],
            timings=Timings(embed_ms=(t1 - t0) * 1e3, search_ms=(t2 - t1) * 1e3, total_ms=(t2 - t0) * 1e3),
        )


def failure_reply(req: SearchRequest, exc: FreshetError) -> SearchReply:
    return error_reply(req.request_id, type(exc).__name__, str(exc))
