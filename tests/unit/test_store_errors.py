"""Whose fault a Weaviate error is: the messages are the ones Weaviate 1.35.2 gave in
tests/integration/test_weaviate_store.py (read-only shard, memory check, invalid values)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import get_args

import httpx
import pytest
from weaviate.exceptions import (
    UnexpectedStatusCodeError,
    WeaviateBatchError,
    WeaviateConnectionError,
    WeaviateDeleteManyError,
    WeaviateInsertManyAllFailedError,
    WeaviateQueryError,
    WeaviateTimeoutError,
)

from freshet.errors import ObjectRejectedError, StoreError, StoreUnavailableError, TransientError
from workers import metrics
from workers.store import ChunkRecord
from workers.weaviate_faults import (
    FaultKind,
    all_failed_messages,
    classify,
    classify_exception,
    judge,
    message_of,
    store_fault,
)
from workers.weaviate_store import WeaviateChunkStore

READONLY = "store is read-only due to: manually set by user"
READONLY_HTTP = ('msg:repo.merge code:500 err:merge into index c_x: update local object: shard="JXb3yzbtDJpJ": '
                 + READONLY)
MEMORY_GRPC = ('batch objects: &fmt.wrapError{msg:"cannot process batch: not enough memory", '
               'err:(*errors.errorString)(0xab6d6bace10)}')
MEMORY_HTTP = "msg:not enough memory code:500 err:not enough memory"
BAD_YEAR = "invalid integer property 'm_year' on class 'C_x': requires an integer, the given value is 'MMXXVI'"
BAD_BUILTIN = "invalid integer property 'position' on class 'C_x': requires an integer, the given value is 'abc'"
WIDE = ("Validate vector index default for target vector b9a659e6-53ce-5563-9c3e-6efdaf3a41ee: new node has a "
        "vector with length 4. Existing nodes have vectors with length 3: vector dimensions do not match the index "
        "dimensions")


@pytest.mark.parametrize(("message", "kind"), [
    (BAD_YEAR, "rejected"),
    ("invalid text array property 'm_tags' on class 'C_x': not a text array, but float64", "rejected"),
    ("invalid date property 'm_day' on class 'C_x': requires a string with a RFC3339 formatted date, "
     "but the given value is 'not a date'", "rejected"),
    ("msg:bad request code:400 err:" + BAD_YEAR, "rejected"),
    # a store word inside the quoted value does not make a rejection transient
    ("invalid integer property 'm_year' on class 'C_x': requires an integer, the given value is 'timeout read-only'",
     "rejected"),
    (BAD_BUILTIN, "schema_mismatch"),  # freshet sets the built-ins: a collection that does not fit, not the event
    (WIDE, "schema_mismatch"),
    ("no such prop with name 'm_nope' found in class 'C_x' in the schema.", "schema_mismatch"),
    (READONLY, "readonly"),
    (READONLY_HTTP, "readonly"),
    (MEMORY_GRPC, "memory"),
    (MEMORY_HTTP, "memory"),
    ("[UNKNOWN] batch delete: cannot process batch delete object: not enough memory", "memory"),
    ("could not find class C_x in schema", "unavailable"),
    ("context deadline exceeded", "unavailable"),
    ("something nobody has seen before", "server_error"),
    ("", "server_error"),
])
def test_classify_names_whose_fault_a_message_is(message: str, kind: FaultKind) -> None:
    assert classify(message) == kind


def test_http_status_alone_decides_only_for_the_store() -> None:
    assert classify("Service Unavailable", 503) == "unavailable"
    assert classify("slow down", 429) == "unavailable"
    assert classify("Unprocessable Entity", 422) == "server_error"  # no named property: not proof of the event's fault


def test_one_store_fault_among_rejections_makes_the_call_the_stores() -> None:
    assert store_fault([BAD_YEAR, BAD_YEAR]) is None
    assert store_fault([BAD_YEAR, READONLY]) == "readonly"
    assert store_fault(["who knows", BAD_YEAR]) == "server_error"
    assert store_fault([]) is None


def http_error(status: int, message: str) -> UnexpectedStatusCodeError:
    return UnexpectedStatusCodeError("Object was not updated.",
                                     httpx.Response(status, json={"error": [{"message": message}]}))


def test_client_exceptions_are_classified_by_type_status_and_message() -> None:
    assert classify_exception(WeaviateConnectionError("refused")) == "unavailable"
    assert classify_exception(WeaviateTimeoutError("read")) == "unavailable"
    assert classify_exception(OSError("reset")) == "unavailable"
    assert classify_exception(http_error(500, READONLY_HTTP)) == "readonly"
    assert classify_exception(http_error(500, MEMORY_HTTP)) == "memory"
    assert classify_exception(http_error(503, "busy")) == "unavailable"
    assert classify_exception(http_error(422, "msg:bad request code:400 err:" + BAD_YEAR)) == "rejected"
    assert classify_exception(WeaviateBatchError(MEMORY_GRPC)) == "memory"
    assert classify_exception(WeaviateDeleteManyError("[UNKNOWN] batch delete: cannot process batch delete "
                                                      "object: not enough memory")) == "memory"
    assert classify_exception(WeaviateQueryError("explorer: vector lengths don't match", "GRPC search")) \
        == "schema_mismatch"


def all_failed(*messages: str) -> WeaviateInsertManyAllFailedError:
    return WeaviateInsertManyAllFailedError("Here is the set of all errors: {}".format("\n".join(messages)))


def test_a_batch_that_failed_whole_keeps_its_messages() -> None:
    exc = all_failed(READONLY, BAD_YEAR)
    assert all_failed_messages(exc) == [READONLY, BAD_YEAR]
    assert classify_exception(exc) == "readonly"
    assert classify_exception(all_failed(BAD_YEAR)) == "rejected"


def test_message_of_quotes_weaviate_not_the_client() -> None:
    assert message_of(http_error(500, READONLY_HTTP)) == READONLY_HTTP

    class Rpc(Exception):
        def code(self) -> object:
            class Code:
                name = "UNKNOWN"
            return Code()

        def details(self) -> str:
            return MEMORY_GRPC

    try:
        raise WeaviateBatchError("<AioRpcError ... debug_error_string = ...>") from Rpc()
    except WeaviateBatchError as exc:
        assert message_of(exc) == f"[UNKNOWN] {MEMORY_GRPC}"


def record(doc: str, n: int, tenant: str | None = None) -> ChunkRecord:
    return ChunkRecord(id=f"id-{doc}-{n}", doc_id=doc, tenant=tenant, title=None, heading_path=(), position=n,
                       text="t", version=1, content_hash="h", vector=[1.0], metadata={}, event_time=None,
                       indexed_at=datetime.now(UTC))


def test_judge_blames_the_objects_only_when_every_failure_is_a_rejection() -> None:
    recs = [record("a", 0), record("b", 0, tenant="t1"), record("b", 1, tenant="t1")]
    err = judge(recs, {1: ("rejected", BAD_YEAR), 2: ("rejected", BAD_YEAR)}, "writing 3 chunks")
    assert isinstance(err, ObjectRejectedError) and isinstance(err, StoreError) and not isinstance(err, TransientError)
    assert [r.id for r in err.rejected] == ["id-b-0", "id-b-1"] and err.written == ("id-a-0",)
    assert err.documents == {("t1", "b")}
    assert "'b'" in str(err) and "m_year" in str(err) and "publish the document again" in str(err)


def test_judge_takes_nothing_as_written_when_the_store_failed_too() -> None:
    recs = [record("a", 0), record("b", 0)]
    err = judge(recs, {0: ("readonly", READONLY), 1: ("rejected", BAD_YEAR)}, "writing 2 chunks")
    assert isinstance(err, StoreUnavailableError) and isinstance(err, TransientError)
    assert err.kind == "readonly" and "none is taken as written" in str(err) and READONLY in str(err)
    unknown = judge(recs, {1: ("server_error", "who knows")}, "writing 2 chunks")
    assert isinstance(unknown, StoreUnavailableError) and unknown.kind == "server_error"


def test_the_metric_labels_are_exactly_the_fault_kinds() -> None:
    assert get_args(FaultKind) == metrics.STORE_ERROR_KINDS


def test_a_connection_reset_under_a_rest_call_is_the_store_being_away() -> None:
    """(CI, chaos weaviate-outage: ``data.update`` let a bare ``httpx.ReadError`` through while
    Weaviate was killed; it was not taken for a transient fault, so the batch was isolated event by
    event instead of waited out.)"""
    assert classify_exception(httpx.ReadError("reset")) == "unavailable"
    assert classify_exception(httpx.ConnectError("refused")) == "unavailable"
    store = WeaviateChunkStore(host="127.0.0.1", http_port=1, grpc_port=2, collection="C")

    class Data:
        async def update(self, uuid: str, properties: object) -> None:
            raise httpx.ReadError("")

    class Collection:
        data = Data()

    class Collections:
        def use(self, name: str) -> Collections:
            return self

        def with_consistency_level(self, level: object) -> Collection:
            return Collection()

    class Client:
        collections = Collections()

        async def is_live(self) -> bool:
            raise httpx.ConnectError("refused")

    async def stay(client: object) -> None: ...

    store._client = Client()  # type: ignore[assignment]
    store._fail_over = stay  # type: ignore[method-assign, assignment]
    with pytest.raises(StoreUnavailableError) as caught:
        asyncio.run(store.update_properties([record("d", 0)]))
    assert caught.value.kind == "unavailable"
