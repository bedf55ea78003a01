"""A LangChain retriever over freshet: ``FreshetRetriever(client=SearchClient(...)).invoke("query")``.

Needs langchain-core: ``pip install 'freshet[langchain]'``. Each call sends one search request over
Kafka and waits for its reply; ``ainvoke`` waits without blocking the event loop.
"""

from __future__ import annotations

from typing import Any

from freshet.client import SearchClient
from freshet.integrations.hits import asearch, hit_metadata, search
from schemas.search import Filter, Hit, SearchMode

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("freshet.integrations.langchain needs langchain-core: pip install 'freshet[langchain]'") from exc

__all__ = ["FreshetRetriever", "to_document"]


def to_document(hit: Hit) -> Document:
    """One hit as a LangChain document: its text, its chunk id as ``id``, the rest as metadata
    (:func:`~freshet.integrations.hits.hit_metadata`)."""
    return Document(id=hit.chunk_id, page_content=hit.text, metadata=hit_metadata(hit))


class FreshetRetriever(BaseRetriever):
    """Retrieves chunks from freshet's query workers; every field but ``client`` and ``timeout`` is a
    :class:`~schemas.search.SearchRequest` field sent with each query.

    A reply other than ``ok`` raises :class:`~freshet.integrations.hits.SearchFailedError`; no reply
    within ``timeout`` seconds raises :class:`~freshet.errors.TransientError`.
    """

    client: SearchClient
    top_k: int = 4
    mode: SearchMode = "hybrid"
    alpha: float | None = None
    tenant: str | None = None
    filters: Filter | None = None
    group_by_doc: bool = False
    timeout: float | None = None
    """Seconds to wait for each reply (also sent as the request's deadline); None: the client's."""

    def _fields(self) -> dict[str, Any]:
        return {"top_k": self.top_k, "mode": self.mode, "alpha": self.alpha, "tenant": self.tenant,
                "filters": self.filters, "group_by_doc": self.group_by_doc}

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [to_document(h) for h in search(self.client, query, self._fields(), self.timeout)]

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        return [to_document(h) for h in await asearch(self.client, query, self._fields(), self.timeout)]
