"""Search request and reply: the request-reply contract of the query worker.

A client sends a :class:`SearchRequest` to the requests topic (key: anything, usually the
request id) and reads the :class:`SearchReply` from ``reply_to`` (default: the configured reply
topic). The reply carries the request id in its body and in the ``correlation_id`` and
``request_id`` Kafka headers, so clients can correlate without parsing the body.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from freshet.errors import InvalidEventError

SCHEMA_MAJOR = 1

#: Kafka headers of the request-reply convention (as Spring's ReplyingKafkaTemplate uses them).
CORRELATION_HEADER = "correlation_id"
REQUEST_ID_HEADER = "request_id"
REPLY_TOPIC_HEADER = "reply_topic"

SearchMode = Literal["hybrid", "vector", "keyword"]


class SearchRequest(BaseModel):
    """One search asked of freshet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(min_length=1, max_length=200, description="Correlates the reply.")
    query: str = Field(min_length=1, max_length=4000, description="The search text.")
    mode: SearchMode = Field("hybrid", description="hybrid (default), vector (dense) or keyword (BM25).")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="Hybrid weight of the vector side.")
    top_k: int = Field(10, ge=1, le=100, description="Number of hits.")
    tenant: str | None = Field(None, description="Search only this tenant's documents.")
    deadline_ms: int | None = Field(None, ge=1, description="Give up after this many ms from receipt.")
    reply_to: str | None = Field(None, description="Reply topic; default the configured reply topic.")
    schema_version: str | None = Field(None, description="Contract version; absent means current.")


class Hit(BaseModel):
    """One retrieved chunk."""

    doc_id: str
    chunk_id: str
    score: float
    title: str | None = None
    heading_path: list[str] = Field(default_factory=list)
    text: str
    version: int
    tenant: str | None = None


class Timings(BaseModel):
    embed_ms: float = 0.0
    search_ms: float = 0.0
    total_ms: float = 0.0


class ReplyError(BaseModel):
    code: str
    message: str


class SearchReply(BaseModel):
    """The answer to one :class:`SearchRequest`."""

    request_id: str
    status: Literal["ok", "error", "timeout"]
    hits: list[Hit] = Field(default_factory=list)
    timings: Timings = Field(default_factory=Timings)
    error: ReplyError | None = None


def parse_request(value: bytes | None) -> SearchRequest:
    """Decode one record of the requests topic, or raise :class:`InvalidEventError`."""
    if value is None:
        raise InvalidEventError("schema", "search request has no value")
    try:
        raw = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError("invalid_json", f"search request is not UTF-8 JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidEventError("schema", f"search request must be a JSON object, got {type(raw).__name__}")
    try:
        return SearchRequest.model_validate(raw)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}" for e in exc.errors())
        raise InvalidEventError("schema", detail) from exc


def request_id_of(value: bytes | None) -> str | None:
    """Best-effort request id of a record that failed validation, to address an error reply."""
    try:
        raw = json.loads(value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    rid = raw.get("request_id") if isinstance(raw, dict) else None
    return rid if isinstance(rid, str) and rid else None
