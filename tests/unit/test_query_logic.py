"""The query worker's pure parts: filter checks, the applied view, grouping, CLI filters."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from freshet.errors import InvalidEventError
from schemas.applied import AppliedRecord, ProgressRecord
from schemas.search import AllOf, Condition, DocFence, OffsetFence, SearchRequest, filter_from_cli
from workers.applied_view import AppliedView
from workers.search import best_per_doc, check_filter, fetch_limit
from workers.store import StoredHit

SCHEMA = {"year": "int", "lang": "text", "published": "date", "tags": "text[]"}


def applied(doc_id: str, version: int, chunks: list[str], op: str = "upsert") -> AppliedRecord:
    return AppliedRecord(doc_id=doc_id, version=version, op=op, chunk_ids=chunks,
                         source_partition=0, source_offset=version, applied_at=datetime.now(UTC))


def hit(cid: str, doc_id: str, score: float = 1.0) -> StoredHit:
    return StoredHit(id=cid, score=score, properties={"doc_id": doc_id, "tenant": ""})


def test_known_fields_with_fitting_values_pass() -> None:
    check_filter(AllOf(all_of=[Condition(field="year", op="gte", value=2020), Condition(field="doc_id", value="a"),
                               Condition(field="published", op="lt", value="2024-01-01T00:00:00Z"),
                               Condition(field="tags", op="in", value=["x", "y"])]), SCHEMA)


@pytest.mark.parametrize(("cond", "reason"), [
    (Condition(field="colour", value="red"), "unknown_filter_field"),
    (Condition(field="year", value="2020"), "invalid_filter"),
    (Condition(field="lang", op="gt", value="en"), "invalid_filter"),
    (Condition(field="published", op="gte", value="last tuesday"), "invalid_filter"),
])
def test_bad_filters_are_refused_with_a_reason(cond: Condition, reason: str) -> None:
    with pytest.raises(InvalidEventError) as err:
        check_filter(cond, SCHEMA)
    assert err.value.reason == reason and cond.field in str(err.value)


def test_the_schema_refuses_ill_formed_conditions() -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        Condition(field="tags", op="in", value="x")
    with pytest.raises(ValueError, match="single value"):
        Condition(field="year", op="gte", value=[1, 2])
    with pytest.raises(ValueError):
        SearchRequest.model_validate({"request_id": "r", "query": "q", "filters": {"and": []}})


def test_the_view_admits_only_the_applied_chunk_set_with_its_version() -> None:
    view = AppliedView()
    view.apply(applied("a", 1, ["a1", "shared"]))
    hits = [hit("a1", "a"), hit("a2", "a"), hit("shared", "a"), hit("b1", "b")]
    assert [(h.id, v) for h, v in view.admit(hits)] == [("a1", 1), ("shared", 1)]
    view.apply(applied("a", 2, ["a2", "shared"]))
    assert [(h.id, v) for h, v in view.admit(hits)] == [("a2", 2), ("shared", 2)]
    view.apply(applied("a", 1, ["a1", "shared"]))  # an older record read late changes nothing
    assert [(h.id, v) for h, v in view.admit(hits)] == [("a2", 2), ("shared", 2)]
    view.apply(applied("a", 2, [], op="delete"))
    assert view.admit(hits) == [] and len(view) == 0


def test_fences_wait_for_the_view() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        view = AppliedView()
        doc_fence = DocFence(doc_id="a", min_version=2)
        offsets = [OffsetFence(partition=1, offset=9)]
        waiting = asyncio.ensure_future(view.wait(doc_fence, 5))
        await asyncio.sleep(0.01)
        view.apply(applied("a", 2, ["a2"]))
        view.notify()
        timed_out = await view.wait(offsets, 0.05)
        view.apply(ProgressRecord(partition=1, through=10))
        view.notify()
        return await waiting, timed_out, await view.wait(offsets, 1)

    assert asyncio.run(scenario()) == (True, False, True)


def test_grouping_keeps_each_documents_best_hit_in_rank_order() -> None:
    ranked = [(hit("a1", "a", 0.9), 1), (hit("b1", "b", 0.8), 1), (hit("a2", "a", 0.7), 1), (hit("c1", "c", 0.1), 3)]
    assert [h.id for h, _ in best_per_doc(ranked)] == ["a1", "b1", "c1"]


def test_the_store_is_asked_for_more_than_top_k() -> None:
    assert fetch_limit(10, 2.0, False) == 30
    assert fetch_limit(10, 2.0, True) == 70
    assert fetch_limit(100, 50.0, True) == 1000


def test_cli_filters() -> None:
    f = filter_from_cli(["year>=2020", "lang!=de", "tags in a,b", "ok=true"])
    assert isinstance(f, AllOf)
    assert [(c.field, c.op, c.value) for c in f.all_of] == [  # type: ignore[union-attr]
        ("year", "gte", 2020), ("lang", "ne", "de"), ("tags", "in", ["a", "b"]), ("ok", "eq", True)]
    assert filter_from_cli(['{"field": "year", "op": "lt", "value": 3}']) == Condition(field="year", op="lt", value=3)
    with pytest.raises(ValueError, match="cannot read filter"):
        filter_from_cli(["year ~ 3"])


def test_a_search_failing_for_an_absent_store_is_answered_unavailable() -> None:
    from freshet.errors import StoreError, StoreUnavailableError
    from schemas.search import SearchRequest
    from workers.search import failure_reply

    req = SearchRequest(request_id="r", query="q")
    reply = failure_reply(req, StoreUnavailableError("Weaviate is not reachable", kind="unavailable"))
    assert reply.status == "error" and reply.error is not None and reply.error.code == "unavailable"
    assert failure_reply(req, StoreError("refused")).error.code == "store_error"  # type: ignore[union-attr]


def test_error_replies_stay_small_whatever_the_explanation() -> None:
    from workers.search import MAX_ERROR_CHARS, error_reply

    reply = error_reply("r", "invalid_filter", "x" * 2_000_000)
    assert reply.error is not None and len(reply.error.message) < MAX_ERROR_CHARS + 100
    assert len(reply.model_dump_json()) < 10_000
