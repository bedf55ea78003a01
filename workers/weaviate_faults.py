"""Whose fault is a Weaviate error: the event's (rejected) or the store's (waited out)?

The rule (freshet's delivery contract): only an error caused by the event itself may send it to
the dead-letter topic. The only part of a stored chunk an event decides freely is the value of its
declared metadata fields (properties ``m_<name>``); everything else is derived by freshet (texts,
positions, vectors from the model). So a failure is ``rejected`` only when Weaviate validated an
object and named one of those properties; everything else is a fault of the store or of its
configuration, retried with backoff, logged, counted by kind:

==================  ========================================================  ================
kind                what Weaviate 1.35.2 says (observed)                      caller
==================  ========================================================  ================
``rejected``        ``invalid integer property 'm_year' on class 'C':         dead-letter the
                    requires an integer, the given value is 'MMXXVI'``        object's event
``schema_mismatch`` ``... vector dimensions do not match the index            wait and retry
                    dimensions`` (the model changed, the collection did
                    not), an invalid built-in property, ``no such prop
                    with name 'x'``: the collection does not fit freshet
``readonly``        ``store is read-only due to: manually set by user`` (a    wait and retry
                    READONLY shard: disk pressure or ``PUT .../shards/{s}``)
``memory``          ``cannot process batch: not enough memory`` (Weaviate's   wait and retry
                    memory check refused the write)
``unavailable``     no connection, timeouts, gRPC UNAVAILABLE, HTTP 503/429,  wait and retry
                    a restarting server (``could not find class``, ...)
``server_error``    anything else: other 5xx, unknown messages                wait and retry
==================  ========================================================  ================

**Unknown messages are the store's fault** (``server_error``), not the event's. Wrongly waiting
is visible and recoverable: the partition stops, the counter and the warning quote the message, and
once the cause is fixed (or the pattern added here) the same events apply. Wrongly dead-lettering
is silent and final: the document's change is skipped and the position moves on, for every event
the fault touches (a model swap would dead-letter the whole topic). And a per-object error is no
proof of the object's guilt: a READONLY shard fails a whole batch with ONE error pinned on index 0
while the other objects report success without being written.

The invalid-property pattern is checked first, because such messages quote the offending value
(``the given value is 'timeout'``) and a store word inside a quoted value must not decide the kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import httpx
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateBaseError,
    WeaviateClosedClientError,
    WeaviateConnectionError,
    WeaviateGRPCUnavailableError,
    WeaviateInsertManyAllFailedError,
    WeaviateTimeoutError,
)

from freshet.errors import ObjectRejectedError, Rejection, StoreUnavailableError
from workers.store import ChunkRecord

FaultKind = Literal["rejected", "schema_mismatch", "readonly", "memory", "unavailable", "server_error"]

#: Properties whose values come from the event as they are (its declared metadata fields).
EVENT_PROPERTY_PREFIX = "m_"
#: ``invalid integer property 'm_year' on class ...`` (also text, text array, date, number, boolean, ...).
_INVALID_PROPERTY = re.compile(r"invalid [a-z0-9 \[\]]+ property '([^']+)'", re.IGNORECASE)
_SCHEMA = ("vector dimensions do not match", "vector lengths don't match", "new node has a vector with length",
           "no such prop with name")
_READONLY = ("read-only", "readonly")
_MEMORY = ("not enough memory", "memory pressure", "out of memory")
_UNAVAILABLE = ("connection", "timeout", "timed out", "deadline", "unavailable", "too many requests",
                "shutting down", "context canceled",
                # a restarting server answers before it has loaded its schema and shards
                "could not find class", "no read replica", "not ready")
_ALL_FAILED_PREFIX = "Here is the set of all errors: "


def classify(message: str, status: int | None = None) -> FaultKind:
    """The kind of one Weaviate error message (and HTTP status, when there was one)."""
    invalid = _INVALID_PROPERTY.search(message)
    if invalid:
        return "rejected" if invalid.group(1).startswith(EVENT_PROPERTY_PREFIX) else "schema_mismatch"
    text = message.lower()
    if any(w in text for w in _SCHEMA):
        return "schema_mismatch"
    if any(w in text for w in _READONLY):
        return "readonly"
    if any(w in text for w in _MEMORY):
        return "memory"
    if status in (429, 503) or any(w in text for w in _UNAVAILABLE):
        return "unavailable"
    return "server_error"


CLIENT_ERRORS: tuple[type[Exception], ...] = (WeaviateBaseError, httpx.TransportError)
"""What a call of the Weaviate client raises when it fails: its own errors, and httpx's transport
errors, which its REST calls (``data.update``, ``is_live``, ...) let through unwrapped (a connection
reset while Weaviate goes away raises a bare ``httpx.ReadError``)."""


def classify_exception(exc: BaseException) -> FaultKind:
    """The kind of an exception the client raised for a whole call."""
    if isinstance(exc, WeaviateConnectionError | WeaviateClosedClientError | WeaviateGRPCUnavailableError
                  | WeaviateTimeoutError | OSError | TimeoutError | httpx.TransportError):
        return "unavailable"
    if isinstance(exc, WeaviateInsertManyAllFailedError):
        return store_fault(all_failed_messages(exc)) or "rejected"
    status = exc.status_code if isinstance(exc, UnexpectedStatusCodeError) else None
    return classify(str(exc), status)


def store_fault(messages: Iterable[str]) -> FaultKind | None:
    """The store's fault among one call's per-object messages (the first that is not a rejection),
    or None when every message is a rejection of its object."""
    for m in messages:
        kind = classify(m)
        if kind != "rejected":
            return kind
    return None


def all_failed_messages(exc: WeaviateInsertManyAllFailedError) -> list[str]:
    """The distinct per-object messages of a batch whose every object failed (the client keeps only
    the set of messages, not which object had which)."""
    text = str(exc)
    _, found, rest = text.partition(_ALL_FAILED_PREFIX)
    return [m for m in (rest if found else text).split("\n") if m.strip()]


def missing_shard(exc: BaseException) -> bool:
    """Whether a call failed because its tenant has no shard in a multi-tenant collection (never
    written to, or dropped by ``freshet tenant delete``): no fault, that tenant holds nothing."""
    return "tenant not found" in f"{message_of(exc)} {exc}"


def message_of(exc: BaseException) -> str:
    """Weaviate's own words in a client exception: the body's first message of an HTTP error, the
    status and details of a gRPC one (not the client's debug dump)."""
    rpc: Any = exc.__cause__  # a grpc AioRpcError under the client's WeaviateBatchError (grpc has no types)
    if callable(getattr(rpc, "code", None)) and callable(getattr(rpc, "details", None)):
        return f"[{getattr(rpc.code(), 'name', rpc.code())}] {rpc.details()}"
    body: Any = exc.error if isinstance(exc, UnexpectedStatusCodeError) else None
    try:
        return str(body["error"][0]["message"])
    except (TypeError, KeyError, IndexError):
        return exc.message if isinstance(exc, WeaviateBaseError) and exc.message else str(exc)


def judge(records: Sequence[ChunkRecord], failures: Mapping[int, tuple[FaultKind, str]],
          what: str) -> StoreUnavailableError | ObjectRejectedError:
    """The error of a write call from its per-record failures (index -> kind, message).

    Any failure that is not a rejection makes the whole call the store's fault: none of its
    acknowledgements is trusted (a READONLY shard reports one error for a batch of which nothing
    was written) and the caller retries it all. Only when every failure is a rejection do the
    others count as written.
    """
    for i in sorted(failures):
        kind, message = failures[i]
        if kind != "rejected":
            return StoreUnavailableError(
                f"Weaviate failed {what} ({kind}; {len(failures)} of {len(records)} reported failed, none is taken as "
                f"written), e.g. chunk {records[i].id} of {records[i].doc_id!r}: {message}", kind=kind)
    rejected = [Rejection(r.id, r.tenant, r.doc_id, failures[i][1]) for i, r in enumerate(records) if i in failures]
    return ObjectRejectedError(rejected, written=[r.id for i, r in enumerate(records) if i not in failures])
