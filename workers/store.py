"""The chunk store protocol: what the domain needs of the vector database.

:class:`ChunkRecord` is one stored chunk; :class:`ChunkStore` writes and searches them. The only
adapter is :mod:`workers.weaviate_store`; unit tests may use their own in-process stand-ins of
this protocol, integration tests never do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from schemas.change import MetadataValue
from schemas.search import DEFAULT_ALPHA, Filter


@dataclass(frozen=True)
class HnswConfig:
    """A vector store's HNSW index: ``ef`` at search time (-1: Weaviate's dynamic ef), and the two
    build settings Weaviate fixes when the collection is made."""

    ef: int = -1
    ef_construction: int = 128
    max_connections: int = 32


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """One chunk as stored: identity, text, position and its vector."""

    id: str
    """uuid5 of (tenant, doc_id, content hash, occurrence): a replay writes the same id."""
    doc_id: str
    tenant: str | None
    title: str | None
    heading_path: tuple[str, ...]
    position: int
    text: str
    version: int
    content_hash: str
    vector: Sequence[float]
    """Empty for a property-only update."""
    metadata: dict[str, MetadataValue]
    event_time: datetime | None
    indexed_at: datetime


@dataclass(frozen=True, slots=True)
class StoreQuery:
    """A search against the store."""

    mode: Literal["hybrid", "vector", "keyword"]
    text: str
    vector: Sequence[float] | None
    limit: int
    alpha: float = DEFAULT_ALPHA
    tenant: str | None = None
    filters: Filter | None = None
    fusion: str | None = None
    """Hybrid fusion (``relative_score``, ``ranked``); None: the store's own setting."""


@dataclass(frozen=True, slots=True)
class StoredHit:
    """One chunk found by a :class:`StoreQuery`, best first."""

    id: str
    score: float
    properties: dict[str, object] = field(default_factory=dict)
    vector_score: float | None = None
    """Cosine similarity to the query vector, when the vector side found the chunk."""
    keyword_score: float | None = None
    """BM25 score, when the keyword side found the chunk."""
    vector: Sequence[float] | None = None
    """The stored vector, when it was asked for (:meth:`ChunkStore.fetch`)."""


class VectorSource(Protocol):
    """Stored vectors by chunk content hash: the previous generation a reindex reuses (same model)."""

    async def start(self) -> None: ...

    async def vectors_by_hash(self, hashes: Sequence[str]) -> dict[str, list[float]]: ...


class ChunkStore(Protocol):
    """Writes and searches chunks. Connections open in :meth:`start`, never in ``__init__``.

    **Tenants.** A multi-tenant store keeps each tenant's chunks in a shard of its own and every
    call names one: the records' ``tenant``, the query's, or the ``tenant`` argument (a call
    without one fails there). A store without tenancy holds every tenant's chunks together; there
    the ``tenant`` argument of :meth:`delete_ids`, :meth:`fetch` and :meth:`vectors` changes
    nothing (a chunk id already names one tenant's chunk: it is uuid5 of the tenant among others).
    A tenant without a shard holds nothing: reads find nothing, deletes delete nothing.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def upsert(self, records: Sequence[ChunkRecord]) -> None:
        """Write (create or replace) every record; raise unless all were acknowledged."""

    async def update_properties(self, records: Sequence[ChunkRecord]) -> None:
        """Replace the properties (not the vectors) of existing objects."""

    async def delete_ids(self, ids: Sequence[str], *, tenant: str | None = None) -> int:
        """Delete these objects (chunks of ``tenant``); return how many existed."""

    async def delete_document(self, tenant: str | None, doc_id: str, *, keep: Sequence[str] = ()) -> int:
        """Delete the document's chunks whose id is not in ``keep``; return how many went."""

    async def search(self, query: StoreQuery) -> list[StoredHit]: ...

    async def fetch(self, ids: Sequence[str], *, tenant: str | None = None,
                    with_vectors: bool = False) -> list[StoredHit]:
        """The stored objects with these ids (chunks of ``tenant``; properties, and with
        ``with_vectors`` their vectors); missing ids are left out."""

    async def vectors(self, max_count: int, *, tenant: str | None = None) -> dict[str, list[float]] | None:
        """Every stored vector by object id (of ``tenant``'s shard in a multi-tenant store: the
        index its searches run on), or None when there are more than ``max_count``."""
