"""The freshness and bulk benchmarks' pure parts (ops/bench/freshness.py, ops/bench/bulk.py): when a
search finds an edit, when a rate counts as sustained, peak memory."""

from __future__ import annotations

import math
import os

import pytest

from ops.bench.bulk import peak_rss_mb
from ops.bench.freshness import Step, summarize, why_not_found
from schemas.change import ChangeEvent
from schemas.search import SearchReply


def _ev(version: int, op: str = "upsert") -> ChangeEvent:
    return ChangeEvent.model_validate({"doc_id": "page.md", "op": op, "version": version}
                                      | ({"content": "text"} if op == "upsert" else {}))


def _reply(*versions: int, status: str = "ok", doc: str = "page.md") -> SearchReply:
    hits = [{"doc_id": doc, "chunk_id": f"c{i}", "score": 1.0, "text": "t", "version": v}
            for i, v in enumerate(versions)]
    return SearchReply.model_validate({"request_id": "r", "status": status, "hits": hits})


def test_an_edit_is_found_by_a_reply_holding_its_version_or_a_later_one() -> None:
    up = {5: "upsert"}
    assert why_not_found(_ev(5), _reply(5), up) is None
    assert why_not_found(_ev(5), _reply(6), up | {6: "upsert"}) is None
    assert why_not_found(_ev(5), _reply(4), up) == "hit at version 4 < 5"
    assert why_not_found(_ev(5), _reply(), up) == "no hit"
    assert why_not_found(_ev(5), _reply(), up | {6: "delete"}) is None, "superseded by a later delete"
    assert why_not_found(_ev(5), _reply(), {4: "delete"} | up) == "no hit", "an earlier delete does not count"
    assert why_not_found(_ev(5), _reply(5, doc="other.md"), up) is not None
    assert why_not_found(_ev(5), _reply(status="timeout"), up) is not None
    assert why_not_found(_ev(7, op="delete"), _reply(), {7: "delete"}) is None
    assert why_not_found(_ev(7, op="delete"), _reply(6), {7: "delete"}) == "hit at version 6 < 7"
    assert why_not_found(_ev(7, op="delete"), _reply(8), {7: "delete", 8: "upsert"}) is None, "re-created"


def test_a_rate_is_sustained_when_edits_become_searchable_about_as_fast_as_they_come() -> None:
    # 100 edits at 10/s: the last is published at 9.9 s and found 0.5 s later: 100 edits in 10.4 s
    flat = summarize(Step(10.0, 100), [0.3, 0.4, 0.5, 0.4] * 25, keep_up=0.8)
    assert flat.sustained and flat.missing == 0 and flat.max_s == 0.5
    assert flat.p50_s == pytest.approx(0.4) and flat.searchable_per_s == pytest.approx(100 / 10.3, abs=0.01)
    # a growing backlog: edit i waits 0.3 + 0.1 i s, the last 10.2 s: 100 edits in 20.1 s
    backlog = summarize(Step(10.0, 100), [0.3 + 0.1 * i for i in range(100)], keep_up=0.8)
    assert not backlog.sustained and backlog.searchable_per_s == pytest.approx(100 / 20.1, abs=0.01)
    lost = summarize(Step(5.0, 4), [0.3, None, 0.3, 0.4], keep_up=0.8)
    assert not lost.sustained and lost.missing == 1


def test_peak_memory_is_read_from_proc() -> None:
    assert peak_rss_mb(os.getpid()) > 10
    assert math.isnan(peak_rss_mb(None))
    assert math.isnan(peak_rss_mb(2**22 + 12345))
