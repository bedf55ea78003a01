"""The HTTP face of the query worker: ``POST /v1/search``, its status codes and its OpenAPI 3.1 document.

The body of the request is a :class:`~schemas.search.SearchRequest` and the body of every answer a
:class:`~schemas.search.SearchReply`, exactly as on the Kafka topics; the HTTP status only says
which kind of reply it is (:func:`http_status`). ``reply_to`` is accepted and ignored: the reply is
the HTTP response. Pure: no I/O; the document is built from the pydantic models, so it cannot drift
from the JSON Schema files of the contracts.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from schemas.search import SearchReply, SearchRequest

SEARCH_PATH = "/v1/search"
OPENAPI_PATH = "/v1/openapi.json"

#: Error codes of a request that is itself at fault (the same codes the Kafka error reply carries).
INVALID_REQUEST_CODES = frozenset({"invalid_json", "schema", "unknown_filter_field", "invalid_filter",
                                   "tenant_required"})
#: HTTP status of an ``error`` reply by its ``error.code``; a code not listed here answers 500.
ERROR_STATUS = {**dict.fromkeys(INVALID_REQUEST_CODES, 400), "tenant_not_allowed": 403, "unavailable": 503,
                "store_error": 502}

#: What each status means, for the OpenAPI document and docs/search-http.md.
STATUS_MEANING = {
    200: "ok: the hits (status 'ok').",
    400: "The request is invalid: 'invalid_json', 'schema' (a field and the reason), 'unknown_filter_field', "
         "'invalid_filter' or 'tenant_required' (multi-tenancy, or a worker serving some tenants: name one), the same "
         "error reply as over Kafka. Do not retry it unchanged.",
    403: "'tenant_not_allowed': this query worker does not serve the request's tenant (FRESHET_QUERY_TENANTS), or "
         "its consistency fence names another tenant's document.",
    500: "The worker failed to handle the request ('internal', 'processing_error'): a bug; the message says what.",
    502: "Weaviate refused the search ('store_error').",
    503: "Unavailable for now ('unavailable'): Weaviate is away, or the worker is still catching up with the "
         "applied topic. Retry later.",
    504: "The deadline passed while waiting for the consistency fence or searching (status 'timeout', "
         "'deadline_exceeded').",
}


def http_status(reply: SearchReply) -> int:
    """The HTTP status that answers ``reply``: 200 ok, 504 timeout, else by error code (400, 502, 503; 500)."""
    if reply.status == "ok":
        return 200
    if reply.status == "timeout":
        return 504
    return ERROR_STATUS.get(reply.error.code if reply.error is not None else "", 500)


def _json(schema_ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of the query worker's search endpoint (served at ``OPENAPI_PATH``)."""
    _, top = models_json_schema([(SearchRequest, "validation"), (SearchReply, "validation")],
                                ref_template="#/components/schemas/{model}")
    search = {
        "operationId": "search",
        "summary": "Search the index: the request of the Kafka topic, answered with its reply.",
        "description": (
            "The same JSON request as on the requests topic, through the same validation, fences, tenant "
            "filter and deadline. The deadline (deadline_ms, else the worker's FRESHET_QUERY_DEADLINE_MS) "
            "counts from the moment the worker received the request, bounded by FRESHET_QUERY_MAX_WAIT_MS. "
            "reply_to is ignored: the reply is the response. Every response body is a SearchReply; the "
            "request_id of a 400 is empty when it could not be read from the body."),
        "requestBody": {"required": True, "content": _json(SearchRequest.__name__)},
        "responses": {str(code): {"description": text, "content": _json(SearchReply.__name__)}
                      for code, text in STATUS_MEANING.items()},
    }
    describe = {"operationId": "openapi", "summary": "This document.",
                "responses": {"200": {"description": "The OpenAPI 3.1 document.",
                                      "content": {"application/json": {"schema": {"type": "object"}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "freshet query worker", "version": "1",
                 "description": "Search over HTTP, for callers without a Kafka client."},
        "paths": {SEARCH_PATH: {"post": search}, OPENAPI_PATH: {"get": describe}},
        "components": {"schemas": top["$defs"]},
    }
