"""Search: answering a :class:`~schemas.search.SearchRequest` from the store, consistently.

The store is asked for more hits than wanted (``overfetch``), the :class:`AppliedView` admits only
chunks of each document's applied version, then hits are grouped by document when asked and cut
to ``top_k``. Filters are checked against the declared fields before anything runs, so an unknown
field is a precise error, not an empty result. So is the request's tenant, against the worker's
:class:`~workers.tenancy.TenantPolicy` (required with multi-tenancy; among those it serves); a hit
whose tenant is not the request's is never admitted, whatever the store returned.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from freshet.errors import FreshetError, InvalidEventError, TransientError
from schemas.metrics import Quality
from schemas.search import (
    BUILTIN_FILTER_FIELDS,
    DEFAULT_ALPHA,
    AllOf,
    Condition,
    Filter,
    Hit,
    ReplyError,
    SearchReply,
    SearchRequest,
    Timings,
    ViewPosition,
)
from workers.applied_view import AppliedView
from workers.embedding import BatchingEmbedder, Embedder, EmbeddingCache, Vector, embed_off_loop
from workers.stats import QueryStats
from workers.store import ChunkStore, StoredHit, StoreQuery
from workers.tenancy import TenantPolicy

_NUMERIC = {"int", "number"}


def check_filter(f: Filter, metadata_schema: Mapping[str, str]) -> None:
    """Raise :class:`InvalidEventError` unless every condition names a known field with a fitting value."""
    if not isinstance(f, Condition):
        for sub in f.all_of if isinstance(f, AllOf) else f.any_of:
            check_filter(sub, metadata_schema)
        return
    kind = BUILTIN_FILTER_FIELDS.get(f.field) or metadata_schema.get(f.field)
    if kind is None:
        known = sorted([*BUILTIN_FILTER_FIELDS, *metadata_schema])
        raise InvalidEventError("unknown_filter_field", f"unknown filter field {f.field!r}; filterable fields: "
                                f"{', '.join(known)} (declare metadata fields with FRESHET_METADATA_FIELDS)")
    values = f.value if isinstance(f.value, list) else [f.value]
    for v in values:
        if not _fits(kind, v):
            raise InvalidEventError("invalid_filter", f"filter on {f.field!r} ({kind}): {v!r} is not a {kind} value")
    if f.op in ("gt", "gte", "lt", "lte") and kind not in (*_NUMERIC, "date"):
        raise InvalidEventError("invalid_filter", f"filter on {f.field!r}: range op {f.op!r} needs a number "
                                f"or date field, {f.field!r} is {kind}")


def _fits(kind: str, v: object) -> bool:
    if kind in ("text", "text[]"):
        return isinstance(v, str)
    if kind == "boolean":
        return isinstance(v, bool)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "number":
        return isinstance(v, int | float) and not isinstance(v, bool)
    if kind == "date" and isinstance(v, str):
        try:
            datetime.fromisoformat(v)
        except ValueError:
            return False
        return True
    return False


def fetch_limit(top_k: int, overfetch: float, group_by_doc: bool) -> int:
    """How many hits to ask the store for, so that enough survive the view and the grouping."""
    factor = overfetch * (3 if group_by_doc else 1)
    return min(1000, max(top_k, math.ceil(top_k * factor) + 10))


def to_hit(h: StoredHit, version: int) -> Hit:
    p = h.properties
    raw_meta = p.get("metadata_json")
    metadata = json.loads(raw_meta) if isinstance(raw_meta, str) and raw_meta else {}
    return Hit(
        doc_id=str(p.get("doc_id", "")), chunk_id=h.id, score=h.score, vector_score=h.vector_score,
        keyword_score=h.keyword_score,
        title=str(p.get("title") or "") or None,
        heading_path=[str(x) for x in p.get("heading_path") or []],  # type: ignore[attr-defined]
        text=str(p.get("text", "")), version=version, tenant=str(p.get("tenant") or "") or None,
        metadata=metadata,
    )


def best_per_doc(hits: list[tuple[StoredHit, int]]) -> list[tuple[StoredHit, int]]:
    """The first (best) hit of each document, in rank order."""
    seen: set[tuple[object, object]] = set()
    out = []
    for h, v in hits:
        key = (h.properties.get("tenant"), h.properties.get("doc_id"))
        if key not in seen:
            seen.add(key)
            out.append((h, v))
    return out


#: Longest error message a reply carries: an explanation of a deeply nested filter can run to
#: megabytes, and a reply over the producer's request size is never sent (silence, not an answer).
MAX_ERROR_CHARS = 2000


def error_reply(request_id: str, code: str, message: str) -> SearchReply:
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS] + f"... ({len(message) - MAX_ERROR_CHARS} more characters cut)"
    return SearchReply(request_id=request_id, status="error", error=ReplyError(code=code, message=message))


def failure_reply(req: SearchRequest, exc: FreshetError) -> SearchReply:
    """The error reply for a search that failed: code ``unavailable`` when Weaviate (or another
    service) is away for now, so the client may retry; else ``store_error``."""
    code = "unavailable" if isinstance(exc, TransientError) else "store_error"
    return error_reply(req.request_id, code, f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Serving:
    """What answers a search: one index generation's model, collection and applied view."""

    generation: str | None
    """The generation's fingerprint (None: the first generation)."""
    embedder: Embedder
    store: ChunkStore
    view: AppliedView
    batcher: BatchingEmbedder


class Searcher:
    """Waits for the request's fence, embeds the query (cached), searches, admits and ranks.

    It serves one index generation at a time (:class:`Serving`); :meth:`switch` replaces it between
    two requests, and a search in flight finishes on the generation it started on."""

    def __init__(self, embedder: Embedder, store: ChunkStore, view: AppliedView, stats: QueryStats, *,
                 metadata_schema: Mapping[str, str], overfetch: float = 2.0, cache_size: int = 1024,
                 alpha: float = DEFAULT_ALPHA, tenancy: TenantPolicy | None = None,
                 generation: str | None = None) -> None:
        self.serving = Serving(generation, embedder, store, view, BatchingEmbedder(embedder))
        self.stats = stats
        self._schema = dict(metadata_schema)
        self.tenancy = tenancy or TenantPolicy()
        """Which tenants' searches this worker answers (its probes search only theirs)."""
        self._overfetch = overfetch
        self._alpha = alpha
        self._cache = EmbeddingCache(cache_size)
        self.probes = Quality()
        """Set by the quality probes."""

    def quality(self) -> Quality:
        """The latest probe figures and the size of the applied index."""
        return self.probes.model_copy(update={"index_documents": len(self.view), "index_chunks": self.view.chunks})

    @property
    def view(self) -> AppliedView:
        """The applied view of the generation served now."""
        return self.serving.view

    @property
    def store(self) -> ChunkStore:
        """The store of the generation served now."""
        return self.serving.store

    @property
    def generation(self) -> str | None:
        return self.serving.generation

    async def start(self) -> None:
        """Connect the store and load the model (off the loop) before the first request."""
        await self.serving.store.start()
        await embed_off_loop(self.serving.embedder, ["warm-up"])

    def switch(self, serving: Serving) -> Serving:
        """Serve ``serving`` from the next request on (started and caught up by the caller); returns
        the generation served until now."""
        old, self.serving = self.serving, serving
        return old

    def validate(self, req: SearchRequest) -> None:
        """Raise :class:`InvalidEventError` for what the schema alone cannot catch."""
        self.tenancy.check(req)
        if req.filters is not None:
            check_filter(req.filters, self._schema)

    async def search(self, req: SearchRequest, *, vector: Vector | None = None) -> SearchReply:
        """Answer ``req`` (already validated); the caller bounds it by the request's deadline.

        ``vector``: the query's vector when the caller has it already (the searchability probe
        searches with a chunk's stored vector), so the model is not run for it."""
        t0 = time.perf_counter()
        s = self.serving  # one generation from fence to reply, whatever switches meanwhile
        if req.consistency is not None:
            await s.view.wait(req.consistency, None)
        t1 = time.perf_counter()
        if vector is None and req.mode != "keyword":
            vector = await self._vector(s, req.query)
        t2 = time.perf_counter()
        stored = await s.store.search(StoreQuery(
            mode=req.mode, text=req.query, vector=vector,
            alpha=self._alpha if req.alpha is None else req.alpha, fusion=req.fusion, tenant=req.tenant,
            filters=req.filters,
            limit=fetch_limit(req.top_k, self._overfetch, req.group_by_doc),
        ))
        if req.tenant is not None:  # the store searched the tenant's shard (or filtered): never another's chunk
            stored = [h for h in stored if h.properties.get("tenant") == req.tenant]
        admitted = s.view.admit(stored)
        seen = s.view.positions()  # the view the hits were admitted by (no await in between)
        self.stats.hits_withheld += len(stored) - len(admitted)
        if req.group_by_doc:
            admitted = best_per_doc(admitted)
        t3 = time.perf_counter()
        return SearchReply(
            request_id=req.request_id, status="ok", hits=[to_hit(h, v) for h, v in admitted[:req.top_k]],
            timings=Timings(wait_ms=(t1 - t0) * 1e3, embed_ms=(t2 - t1) * 1e3, search_ms=(t3 - t2) * 1e3,
                            total_ms=(t3 - t0) * 1e3),
            view=[ViewPosition(partition=p, through=t) for p, t in sorted(seen.items())],
            generation=s.generation,
        )

    async def _vector(self, s: Serving, query: str) -> Vector:
        model = s.embedder.model_id
        key = hashlib.sha256(query.encode()).hexdigest()
        cached = self._cache.get(model, key)
        if cached is not None:
            self.stats.query_cache_hits += 1
            return cached
        vec = await s.batcher.embed(query)
        self._cache.put(model, key, vec)
        return vec
