"""A LlamaIndex retriever over freshet: ``FreshetRetriever(SearchClient(...)).retrieve("query")``.

Needs llama-index-core: ``pip install 'freshet[llamaindex]'``. Each call sends one search request
over Kafka and waits for its reply; ``aretrieve`` waits without blocking the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from freshet.client import SearchClient
from freshet.integrations.hits import asearch, hit_metadata, search
from schemas.search import Filter, Hit, SearchMode

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError("freshet.integrations.llamaindex needs llama-index-core: "
                      "pip install 'freshet[llamaindex]'") from exc

__all__ = ["FreshetRetriever", "to_node"]

#: Metadata an LLM or an embedding gains nothing from: they see the doc id, title, heading path and
#: the document's own metadata.
_HIDDEN = ["chunk_id", "version", "score", "vector_score", "keyword_score", "tenant"]


def to_node(hit: Hit) -> NodeWithScore:
    """One hit as a scored text node: id = chunk id, ``ref_doc_id`` = doc id, the rest as metadata
    (:func:`~freshet.integrations.hits.hit_metadata`)."""
    node = TextNode(id_=hit.chunk_id, text=hit.text, metadata=hit_metadata(hit),
                    excluded_llm_metadata_keys=_HIDDEN, excluded_embed_metadata_keys=_HIDDEN,
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=hit.doc_id)})
    return NodeWithScore(node=node, score=hit.score)


class FreshetRetriever(BaseRetriever):
    """Retrieves chunks from freshet's query workers. The keyword arguments but ``timeout`` and
    ``callback_manager`` are :class:`~schemas.search.SearchRequest` fields sent with each query;
    ``timeout``: seconds to wait for each reply (also sent as its deadline), None: the client's.

    A reply other than ``ok`` raises :class:`~freshet.integrations.hits.SearchFailedError`; no reply
    in time raises :class:`~freshet.errors.TransientError`.
    """

    def __init__(self, client: SearchClient, *, top_k: int = 4, mode: SearchMode = "hybrid",
                 alpha: float | None = None, tenant: str | None = None,
                 filters: Filter | Mapping[str, Any] | None = None,
                 group_by_doc: bool = False, timeout: float | None = None,
                 callback_manager: CallbackManager | None = None) -> None:
        super().__init__(callback_manager=callback_manager)
        self.client = client
        self.timeout = timeout
        self.fields: dict[str, Any] = {"top_k": top_k, "mode": mode, "alpha": alpha, "tenant": tenant,
                                       "filters": filters, "group_by_doc": group_by_doc}

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [to_node(h) for h in search(self.client, query_bundle.query_str, self.fields, self.timeout)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [to_node(h) for h in await asearch(self.client, query_bundle.query_str, self.fields, self.timeout)]
