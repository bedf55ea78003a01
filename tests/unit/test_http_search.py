"""The pure parts of search over HTTP and the retrievers: status mapping, the OpenAPI document, hits
as LangChain documents and LlamaIndex nodes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from llama_index.core.schema import MetadataMode

from freshet.errors import InvalidEventError, StoreError, StoreUnavailableError
from freshet.integrations.hits import SearchFailedError, hit_metadata, hits_of
from freshet.integrations.langchain import to_document
from freshet.integrations.llamaindex import to_node
from schemas.openapi import ERROR_STATUS, INVALID_REQUEST_CODES, STATUS_MEANING, http_status, openapi_document
from schemas.search import Hit, ReplyError, SearchReply, SearchRequest
from streams.query import admit
from tests.unit.fakes import DictStore, WordEmbedder
from workers.applied_view import AppliedView
from workers.replies import PROCESSING_ERROR
from workers.search import Searcher, error_reply, failure_reply
from workers.stats import QueryStats

HIT = Hit(doc_id="notes/glacier.md", chunk_id="c-1", score=0.75, title="The glacier",
          heading_path=["The glacier", "Part 1"], text="How the glacier moves.", version=3, tenant="acme",
          metadata={"lang": "en", "score": 9, "tags": ["ice"]})


def searcher() -> Searcher:
    return Searcher(WordEmbedder(), DictStore(), AppliedView(), QueryStats(), metadata_schema={"year": "int"})


def refusal(body: bytes) -> InvalidEventError:
    with pytest.raises(InvalidEventError) as caught:
        admit(body, searcher())
    return caught.value


@pytest.mark.parametrize("body", [
    b"{not json",
    b'{"request_id": "r", "query": "q", "top_k": 0}',
    b'{"request_id": "r", "query": "q", "filters": {"field": "colour", "value": "red"}}',
    b'{"request_id": "r", "query": "q", "filters": {"field": "year", "op": "gte", "value": "soon"}}',
])
def test_every_refusal_of_the_shared_admission_is_a_400(body: bytes) -> None:
    exc = refusal(body)
    assert exc.reason in INVALID_REQUEST_CODES
    assert http_status(error_reply("r", exc.reason, str(exc))) == 400


def test_admission_passes_a_valid_request_through() -> None:
    req = admit(b'{"request_id": "r", "query": "glacier", "filters": {"field": "year", "value": 2020}}', searcher())
    assert req == SearchRequest(request_id="r", query="glacier", filters={"field": "year", "value": 2020})


def test_status_follows_the_kind_of_reply() -> None:
    req = SearchRequest(request_id="r", query="q")
    assert http_status(SearchReply(request_id="r", status="ok")) == 200
    assert http_status(SearchReply(request_id="r", status="timeout",
                                   error=ReplyError(code="deadline_exceeded", message="late"))) == 504
    assert http_status(failure_reply(req, StoreUnavailableError("Weaviate is down"))) == 503
    assert http_status(failure_reply(req, StoreError("refused"))) == 502
    assert http_status(error_reply("r", "internal", "bug")) == 500
    assert http_status(error_reply("r", PROCESSING_ERROR, "bug")) == 500
    assert http_status(error_reply("r", "a_code_nobody_mapped", "?")) == 500
    assert http_status(SearchReply(request_id="r", status="error")) == 500


def test_every_status_the_endpoint_answers_is_described() -> None:
    assert {200, 500, 504, *ERROR_STATUS.values()} == set(STATUS_MEANING)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*([node["$ref"]] if "$ref" in node else []), *(r for v in node.values() for r in _refs(v))]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_the_openapi_document_is_3_1_and_every_reference_resolves() -> None:
    doc = json.loads(json.dumps(openapi_document()))  # plain JSON, as served
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] and doc["info"]["version"]
    schemas = doc["components"]["schemas"]
    refs = _refs(doc)
    assert refs and all(r.startswith("#/components/schemas/") for r in refs)
    assert {r.rsplit("/", 1)[1] for r in refs} <= set(schemas)
    post = doc["paths"]["/v1/search"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SearchRequest"}
    for code in ("200", "400", "503", "504"):
        assert post["responses"][code]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/SearchReply"}
    assert "get" in doc["paths"]["/v1/openapi.json"]


@pytest.mark.parametrize("model", [SearchRequest, SearchReply])
def test_the_openapi_schemas_are_the_models_own(model: type[SearchRequest] | type[SearchReply]) -> None:
    own = model.model_json_schema()
    defs = own.pop("$defs", {})
    moved = json.loads(json.dumps(own).replace('"#/$defs/', '"#/components/schemas/'))
    schemas = openapi_document()["components"]["schemas"]
    assert schemas[model.__name__] == moved
    for name, schema in defs.items():
        assert schemas[name] == json.loads(json.dumps(schema).replace('"#/$defs/', '"#/components/schemas/'))


def test_a_hit_keeps_its_own_metadata_apart_from_freshets() -> None:
    meta = hit_metadata(HIT)
    assert meta == {"doc_id": "notes/glacier.md", "chunk_id": "c-1", "tenant": "acme", "version": 3,
                    "score": 0.75, "vector_score": None, "keyword_score": None, "title": "The glacier",
                    "heading_path": ["The glacier", "Part 1"],
                    "metadata": {"lang": "en", "score": 9, "tags": ["ice"]}}
    meta["heading_path"].append("changed")
    assert HIT.heading_path == ["The glacier", "Part 1"]  # a copy, not the hit's own list


def test_a_hit_as_a_langchain_document() -> None:
    doc = to_document(HIT)
    assert (doc.id, doc.page_content) == ("c-1", "How the glacier moves.")
    assert doc.metadata == hit_metadata(HIT)


def test_a_hit_as_a_llamaindex_node() -> None:
    scored = to_node(HIT)
    assert scored.score == 0.75 and scored.node.node_id == "c-1"
    assert scored.node.ref_doc_id == "notes/glacier.md"
    assert scored.node.get_content() == "How the glacier moves."
    assert scored.node.metadata == hit_metadata(HIT)
    llm_text = scored.node.get_content(metadata_mode=MetadataMode.LLM)
    assert "The glacier" in llm_text and "c-1" not in llm_text


@pytest.mark.parametrize(("reply", "retryable"), [
    (SearchReply(request_id="r", status="timeout", error=ReplyError(code="deadline_exceeded", message="late")), True),
    (error_reply("r", "unavailable", "Weaviate is down"), True),
    (error_reply("r", "unknown_filter_field", "unknown filter field 'colour'"), False),
])
def test_a_reply_other_than_ok_raises_with_its_code(reply: SearchReply, retryable: bool) -> None:
    with pytest.raises(SearchFailedError) as caught:
        hits_of(reply)
    assert caught.value.code == (reply.error.code if reply.error else "")
    assert caught.value.retryable is retryable and caught.value.request_id == "r"
    assert reply.error is not None and reply.error.message in str(caught.value)


def test_an_ok_reply_gives_its_hits() -> None:
    assert hits_of(SearchReply(request_id="r", status="ok", hits=[HIT])) == [HIT]


def test_a_request_without_alpha_gets_the_workers_setting() -> None:
    store = DictStore()
    searcher = Searcher(WordEmbedder(), store, AppliedView(), QueryStats(), metadata_schema={}, alpha=0.35)
    asyncio.run(searcher.search(SearchRequest(request_id="r", query="glacier")))
    asyncio.run(searcher.search(SearchRequest(request_id="s", query="glacier", alpha=0.9)))
    assert [q.alpha for q in store.queries] == [0.35, 0.9]
