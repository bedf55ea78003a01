"""What both retrievers share: one search over :class:`~freshet.client.SearchClient`, and a hit's
metadata as the frameworks' documents carry it. Imports no framework.

A reply that is not ``ok`` raises :class:`SearchFailedError` (a retriever has no way to return an
error); its ``retryable`` says whether asking again later may help.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from freshet.client import SearchClient
from freshet.errors import FreshetError
from schemas.search import Hit, SearchReply

#: ``error.code`` values of replies worth asking again later.
RETRYABLE_CODES = frozenset({"unavailable", "deadline_exceeded"})


class SearchFailedError(FreshetError):
    """The query worker answered a retriever's search with an ``error`` or ``timeout`` reply."""

    def __init__(self, reply: SearchReply) -> None:
        self.request_id = reply.request_id
        self.status = reply.status
        self.code = reply.error.code if reply.error is not None else ""
        detail = reply.error.message if reply.error is not None else "no error detail"
        super().__init__(f"search {reply.request_id!r} answered {reply.status!r} ({self.code}): {detail}")

    @property
    def retryable(self) -> bool:
        """True for ``timeout`` replies and ``unavailable`` errors: the same search may succeed later."""
        return self.status == "timeout" or self.code in RETRYABLE_CODES


def hits_of(reply: SearchReply) -> list[Hit]:
    """The hits of an ``ok`` reply; raise :class:`SearchFailedError` for any other."""
    if reply.status != "ok":
        raise SearchFailedError(reply)
    return reply.hits


def search(client: SearchClient, query: str, fields: Mapping[str, Any], timeout: float | None) -> list[Hit]:
    """Search and wait (``fields``: of :class:`~schemas.search.SearchRequest`). Raises
    :class:`SearchFailedError`, or :class:`~freshet.errors.TransientError` when no reply came in time."""
    return hits_of(client.search(query, timeout=timeout, **fields))


async def asearch(client: SearchClient, query: str, fields: Mapping[str, Any], timeout: float | None) -> list[Hit]:
    """:func:`search` without blocking the event loop: the client's reply thread resolves the future."""
    return hits_of(await asyncio.wrap_future(client.submit(query, timeout=timeout, **fields)))


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """A hit's fields besides its text, as a document's metadata.

    The document's own metadata stays under ``"metadata"``, so a field of its own can never shadow
    freshet's (a document may well have a ``score`` or a ``version`` of its own).
    """
    return {"doc_id": hit.doc_id, "chunk_id": hit.chunk_id, "tenant": hit.tenant, "version": hit.version,
            "score": hit.score, "vector_score": hit.vector_score, "keyword_score": hit.keyword_score,
            "title": hit.title, "heading_path": list(hit.heading_path),
            "metadata": dict(hit.metadata)}
