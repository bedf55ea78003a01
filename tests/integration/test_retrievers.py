"""The LangChain and LlamaIndex retrievers against the real stack, through the frameworks' own calls."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import NodeWithScore, QueryBundle

from freshet.client import SearchClient
from freshet.integrations import langchain, llamaindex
from freshet.integrations.hits import SearchFailedError
from freshet.settings import Settings
from schemas.change import ChangeEvent
from tests.integration.helpers import publish_and_wait

pytestmark = pytest.mark.integration

TOPICS = ["lighthouse", "glacier", "orchard"]


def note(topic: str, tenant: str) -> ChangeEvent:
    return ChangeEvent(doc_id=f"notes/{topic}.md", op="upsert", version=1, tenant=tenant, title=f"The {topic}",
                       metadata={"kind": "note"},
                       content=f"# The {topic}\n\n## Visiting\n\nWhat a visitor to the {topic} of {tenant} should "
                               f"know: the {topic} changes with the seasons.")


@pytest.fixture(scope="module")
def client(pipeline: Settings) -> Iterator[SearchClient]:
    publish_and_wait(pipeline, [note(t, tenant) for t in TOPICS for tenant in ("acme", "globex")])
    c = SearchClient(pipeline.bootstrap_servers, request_topic=pipeline.topic_requests,
                     reply_topic=pipeline.topic_replies, timeout=60)
    yield c
    c.close()


def test_langchain_invoke_returns_documents(client: SearchClient) -> None:
    retriever = langchain.FreshetRetriever(client=client, top_k=2, mode="keyword", tenant="acme")
    docs = retriever.invoke("glacier")
    assert docs and all(isinstance(d, Document) for d in docs) and len(docs) <= 2
    best = docs[0]
    assert best.metadata["doc_id"] == "notes/glacier.md" and best.metadata["tenant"] == "acme"
    assert best.metadata["version"] == 1 and best.metadata["score"] > 0
    assert best.metadata["keyword_score"] == best.metadata["score"] and best.metadata["vector_score"] is None
    assert best.metadata["metadata"] == {"kind": "note"} and best.metadata["heading_path"]
    assert "glacier" in best.page_content and best.id == best.metadata["chunk_id"]
    assert {d.metadata["tenant"] for d in docs} == {"acme"}


def test_langchain_ainvoke_and_a_filter(client: SearchClient) -> None:
    retriever = langchain.FreshetRetriever(client=client, top_k=10, tenant="globex", group_by_doc=True,
                                           filters={"field": "doc_id", "op": "ne", "value": "notes/orchard.md"})
    docs = asyncio.run(retriever.ainvoke("what a visitor should know about the seasons"))
    assert {d.metadata["doc_id"] for d in docs} == {"notes/lighthouse.md", "notes/glacier.md"}
    assert {d.metadata["tenant"] for d in docs} == {"globex"}


def test_llamaindex_retrieve_returns_scored_nodes(client: SearchClient) -> None:
    retriever = llamaindex.FreshetRetriever(client, top_k=3, mode="hybrid", tenant="globex")
    nodes = retriever.retrieve("orchard seasons")
    assert nodes and all(isinstance(n, NodeWithScore) for n in nodes) and len(nodes) <= 3
    best = nodes[0]
    assert best.node.ref_doc_id == "notes/orchard.md" and best.node.metadata["tenant"] == "globex"
    assert best.score is not None and best.score > 0 and "orchard" in best.node.get_content()
    assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)
    assert {n.node.metadata["tenant"] for n in nodes} == {"globex"}


def test_llamaindex_aretrieve(client: SearchClient) -> None:
    retriever = llamaindex.FreshetRetriever(client, top_k=1, mode="keyword", tenant="acme")
    [scored] = asyncio.run(retriever.aretrieve(QueryBundle("lighthouse")))
    assert scored.node.ref_doc_id == "notes/lighthouse.md"


def test_an_error_reply_raises_with_its_code(client: SearchClient) -> None:
    retriever = langchain.FreshetRetriever(client=client, filters={"field": "colour", "value": "red"})
    with pytest.raises(SearchFailedError) as caught:
        retriever.invoke("glacier")
    assert caught.value.code == "unknown_filter_field" and not caught.value.retryable
    with pytest.raises(SearchFailedError):
        llamaindex.FreshetRetriever(client, filters={"field": "colour", "value": "red"}).retrieve("glacier")
