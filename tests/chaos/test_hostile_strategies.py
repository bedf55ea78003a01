"""The hostile-input strategies: seeded, every category present, every bad record bad by the contract."""

from __future__ import annotations

from schemas.change import parse_change
from tests.chaos import hostile

TOPICS = {"changes": "t.changes", "requests": "t.requests", "applied": "t.applied", "deadletter": "t.dl",
          "metrics": "t.metrics"}


def test_the_mix_is_the_same_every_run_and_covers_every_category() -> None:
    a, b = hostile.mix(400, TOPICS), hostile.mix(400, TOPICS)
    assert [(h.key, h.value, h.headers) for h in a] == [(h.key, h.value, h.headers) for h in b]
    assert {h.category for h in a} == set(hostile.WEIGHTS)
    assert abs(len(a) - 400) <= len(hostile.WEIGHTS)


def test_bad_change_records_break_the_contract_and_good_ones_keep_it() -> None:
    for h in hostile.mix(400, TOPICS):
        if h.target != "changes":
            continue
        if h.expect == "applied":
            assert h.value is not None and h.event is not None
            assert parse_change(h.value, h.key, max_bytes=hostile.MAX_BYTES) == h.event
        else:
            assert h.expect == "dead_letter" and hostile._bad_change(h.key, h.value), h


def test_every_answerable_request_carries_a_correlation_id() -> None:
    mix = hostile.mix(400, TOPICS)
    assert all(len(h.value or b"") < hostile.MAX_RECORD_BYTES for h in mix)
    assert len({h.correlation for h in mix if h.correlation}) == sum(1 for h in mix if h.correlation)
    for h in mix:
        if h.target == "requests" and h.expect in ("error", "timeout"):
            assert h.correlation and ("correlation_id", h.correlation) in h.headers
        if h.category == "foreign_reply_to":
            assert b'"reply_to": ' in (h.value or b"")
