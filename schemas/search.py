"""Search request and reply: the request-reply contract of the query worker.

A client sends a :class:`SearchRequest` to the requests topic (key: anything, usually the
request id) and reads the :class:`SearchReply` from ``reply_to`` (default: the configured reply
topic). The reply carries the request id in its body and in the ``correlation_id`` and
``request_id`` Kafka headers, so clients can correlate without parsing the body.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from freshet.errors import InvalidEventError

SCHEMA_MAJOR = 1

#: Kafka headers of the request-reply convention (as Spring's ReplyingKafkaTemplate uses them).
CORRELATION_HEADER = "correlation_id"
REQUEST_ID_HEADER = "request_id"
REPLY_TOPIC_HEADER = "reply_topic"

SearchMode = Literal["hybrid", "vector", "keyword"]
Fusion = Literal["relative_score", "ranked"]
#: Hybrid weight of the vector side, with relative-score fusion (``freshet eval --sweep`` on
#: msmarco-5k and dbpedia-5k, docs/benchmarks.md): the best alpha on msmarco, within the intervals of
#: vector alone on dbpedia, and in the 0.5-0.7 band that fuses best where BM25 is the stronger side.
DEFAULT_ALPHA = 0.7
FilterOp = Literal["eq", "ne", "in", "gt", "gte", "lt", "lte"]
Scalar = Union[bool, int, float, str]  # noqa: UP007 - pydantic tries the members in this order

#: Fields every request may filter on, besides the declared metadata fields.
BUILTIN_FILTER_FIELDS = {"doc_id": "text", "tenant": "text", "title": "text"}


class Condition(BaseModel):
    """``field op value``: equality (``eq``, ``ne``), membership (``in``, a list) or a range bound
    (``gt``, ``gte``, ``lt``, ``lte``: numbers, or RFC 3339 strings for date fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(min_length=1, description="doc_id, tenant, title or a declared metadata field.")
    op: FilterOp = "eq"
    value: Scalar | list[Scalar]

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        if self.op == "in" and not (isinstance(self.value, list) and self.value):
            raise ValueError(f"filter on {self.field!r}: op 'in' needs a non-empty list, got {self.value!r}")
        if self.op != "in" and isinstance(self.value, list):
            raise ValueError(f"filter on {self.field!r}: op {self.op!r} needs a single value, got a list")
        if self.op in ("gt", "gte", "lt", "lte") and isinstance(self.value, bool):
            raise ValueError(f"filter on {self.field!r}: a range bound must be a number or a date")
        return self


class AllOf(BaseModel):
    """Every sub-filter holds: ``{"and": [...]}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    all_of: list[Filter] = Field(alias="and", min_length=1)


class AnyOf(BaseModel):
    """At least one sub-filter holds: ``{"or": [...]}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    any_of: list[Filter] = Field(alias="or", min_length=1)


Filter = Union[Condition, AllOf, AnyOf]  # noqa: UP007 - a recursive alias pydantic resolves by name
AllOf.model_rebuild()
AnyOf.model_rebuild()


def filter_fields(f: Filter) -> list[str]:
    """Every field a filter names."""
    if isinstance(f, Condition):
        return [f.field]
    return [name for sub in (f.all_of if isinstance(f, AllOf) else f.any_of) for name in filter_fields(sub)]


_CLI_OPS = (("!=", "ne"), (">=", "gte"), ("<=", "lte"), ("=", "eq"), (">", "gt"), ("<", "lt"))


def _cli_value(text: str) -> Scalar:
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def filter_from_cli(conditions: Sequence[str]) -> Filter:
    """``freshet search --filter`` texts (ANDed) as a filter: ``FIELD=V``, ``FIELD!=V``,
    ``FIELD>=V`` (``>``, ``<``, ``<=``), ``FIELD in V1,V2``, or one JSON filter object."""
    parts: list[Filter] = []
    for text in conditions:
        if text.lstrip().startswith("{"):
            parts.append(TypeAdapter(Filter).validate_json(text))
            continue
        field, sep, rest = text.partition(" in ")
        if sep:
            parts.append(Condition(field=field.strip(), op="in", value=[_cli_value(v) for v in rest.split(",")]))
            continue
        for symbol, op in _CLI_OPS:
            field, sep, rest = text.partition(symbol)
            if sep:
                parts.append(Condition(field=field.strip(), op=op, value=_cli_value(rest)))
                break
        else:
            raise ValueError(f"cannot read filter {text!r}: use FIELD=V, FIELD>=V, 'FIELD in A,B' or a JSON object")
    return parts[0] if len(parts) == 1 else AllOf(all_of=parts)


class DocFence(BaseModel):
    """Answer only once this document is applied at ``min_version`` or later (read-your-writes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    doc_id: str = Field(min_length=1)
    tenant: str | None = None
    min_version: int = Field(ge=0)


class OffsetFence(BaseModel):
    """Answer only once the record at ``offset`` of changes partition ``partition`` is applied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class SearchRequest(BaseModel):
    """One search asked of freshet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(min_length=1, max_length=200, description="Correlates the reply.")
    query: str = Field(min_length=1, max_length=4000, description="The search text.")
    mode: SearchMode = Field("hybrid", description="hybrid (default), vector (dense) or keyword (BM25).")
    alpha: float | None = Field(None, ge=0.0, le=1.0, description=(
        "Hybrid weight of the vector side; absent: the query worker's FRESHET_HYBRID_ALPHA (0.7 by default)."))
    fusion: Fusion | None = Field(None, description="How hybrid fuses its sides: relative_score (min-max normalized "
                                                    "scores) or ranked (reciprocal ranks); empty = the worker's "
                                                    "FRESHET_HYBRID_FUSION.")
    top_k: int = Field(10, ge=1, le=100, description="Number of hits.")
    tenant: str | None = Field(None, description="Search only this tenant's documents.")
    filters: Filter | None = Field(None, description="Conditions on doc_id, tenant, title and declared "
                                                     "metadata fields, combined with and/or.")
    group_by_doc: bool = Field(False, description="One hit per document: its best chunk.")
    deadline_ms: int | None = Field(None, ge=1, le=600_000, description=(
        "Answer within this many ms of the request's Kafka timestamp, and never more than this many ms after the "
        "worker reads it (nor more than the worker's FRESHET_QUERY_MAX_WAIT_MS)."))
    reply_to: str | None = Field(None, description=(
        "Reply topic; default the configured reply topic. It must match the worker's allowed pattern (default "
        "'<reply topic>*') and not be a topic freshet uses itself; else the reply is a 'reply_topic_refused' "
        "error on the default reply topic."))
    consistency: DocFence | list[OffsetFence] | None = Field(
        None, description="Answer only once these writes are searchable, waiting up to the deadline.")
    schema_version: str | None = Field(None, description="Contract version; absent means current.")


class Hit(BaseModel):
    """One retrieved chunk."""

    doc_id: str
    chunk_id: str
    score: float = Field(description=(
        "Orders the hits. hybrid: the fused score in [0, 1] (see fusion); vector: the cosine similarity; "
        "keyword: the BM25 score."))
    vector_score: float | None = Field(None, description=(
        "Cosine similarity of the chunk to the query (-1 to 1), when the vector side found it."))
    keyword_score: float | None = Field(None, description=(
        "BM25 score of the chunk for the query (0 up, unbounded), when the keyword side found it."))
    title: str | None = None
    heading_path: list[str] = Field(default_factory=list)
    text: str
    version: int = Field(description="The document's applied version this chunk belongs to.")
    tenant: str | None = None
    metadata: dict[str, Scalar | list[str]] = Field(default_factory=dict)


class Timings(BaseModel):
    wait_ms: float = Field(0.0, description="Waiting for the consistency fence.")
    embed_ms: float = 0.0
    search_ms: float = 0.0
    total_ms: float = Field(0.0, description="From reading the request to sending the reply.")


class ReplyError(BaseModel):
    code: str
    message: str


class ViewPosition(BaseModel):
    """How far the answering worker's applied view reached on one changes partition."""

    partition: int = Field(ge=0)
    through: int = Field(ge=0, description="Every record of the partition below this offset was applied in the "
                                           "view the hits were admitted by.")


class SearchReply(BaseModel):
    """The answer to one :class:`SearchRequest`."""

    request_id: str
    status: Literal["ok", "error", "timeout"]
    hits: list[Hit] = Field(default_factory=list)
    timings: Timings = Field(default_factory=Timings)
    error: ReplyError | None = None
    view: list[ViewPosition] = Field(default_factory=list, description=(
        "The answering worker's applied view per changes partition (ok replies). Sent back as the offset fences "
        "of the next request (SearchClient's session), it keeps a client from reading back in time when its "
        "requests go to different query workers."))
    generation: str | None = Field(None, description=(
        "The index generation that answered (freshet reindex; absent: the first generation, FRESHET_COLLECTION)."))


def parse_request(value: bytes | None) -> SearchRequest:
    """Decode one record of the requests topic, or raise :class:`InvalidEventError`."""
    if value is None:
        raise InvalidEventError("schema", "search request has no value")
    try:
        raw = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidEventError("invalid_json", f"search request is not UTF-8 JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidEventError("schema", f"search request must be a JSON object, got {type(raw).__name__}")
    try:
        return SearchRequest.model_validate(raw)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}" for e in exc.errors())
        raise InvalidEventError("schema", detail) from exc


def reply_to_of(value: bytes | None) -> str | None:
    """Best-effort ``reply_to`` of a record that failed validation."""
    return _text_field(value, "reply_to")


def request_id_of(value: bytes | None) -> str | None:
    """Best-effort request id of a record that failed validation, to address an error reply.

    None unless it is a non-empty string that encodes as UTF-8: JSON can carry a lone surrogate
    (``"\\ud800"``), which no reply could carry as its key.
    """
    return _text_field(value, "request_id")


def _text_field(value: bytes | None, name: str) -> str | None:
    try:
        raw = json.loads(value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    text = raw.get(name) if isinstance(raw, dict) else None
    return text if isinstance(text, str) and text and _encodable(text) else None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def header_text(value: bytes | None) -> str | None:
    """A header value as text (None when absent or empty). Headers should be UTF-8; a byte that is
    not decodes as U+FFFD, so a mangled reply-topic header names no legal topic and is refused,
    never guessed at, and never raises."""
    return value.decode("utf-8", "replace") if value else None
