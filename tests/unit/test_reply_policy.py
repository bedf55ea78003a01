"""Where replies may go and how long a request may take (workers/replies.py)."""

from __future__ import annotations

import pytest

from freshet.settings import Settings
from workers.replies import ReplyPolicy, Route, addressed_error, seconds_allowed

SETTINGS = Settings(topic_changes="acme.changes", topic_requests="acme.requests", topic_replies="acme.replies",
                    topic_applied="acme.applied", topic_dead_letter="acme.deadletter", topic_metrics="acme.metrics",
                    consumer_group_prefix="acme")
POLICY = ReplyPolicy.of(SETTINGS)


@pytest.mark.parametrize("topic", ["acme.replies", "acme.replies.alice", "acme.replies-7", "acme.repliesX"])
def test_the_default_reply_topic_and_what_matches_the_pattern_are_allowed(topic: str) -> None:
    assert POLICY.refusal(topic) is None
    assert POLICY.route(topic) == Route(topic)


@pytest.mark.parametrize(("topic", "why"), [
    ("acme.applied", "freshet's own topics"),  # compacted: a reply keyed like a document erases its record
    ("acme.changes", "freshet's own topics"),
    ("acme.requests", "freshet's own topics"),
    ("acme.deadletter", "freshet's own topics"),
    ("acme-indexer-doc-state-changelog", "Faust internals"),  # the indexer's table: a reply crashes its recovery
    ("acme-query-__assignor-__leader", "Faust internals"),
    ("__consumer_offsets", "Kafka's internal topics"),
    ("__transaction_state", "Kafka's internal topics"),
    ("other.replies", "does not match"),
    ("ACME.REPLIES", "does not match"),
    ("acme.replies/../x", "not a legal Kafka topic name"),
    ("acme.replies\ufffd", "not a legal Kafka topic name"),  # an undecodable header byte
    ("acme.replies" + "x" * 240, "not a legal Kafka topic name"),
])
def test_other_topics_are_refused_with_the_topic_the_reason_and_the_pattern(topic: str, why: str) -> None:
    refusal = POLICY.refusal(topic)
    assert refusal is not None
    assert repr(topic) in refusal and why in refusal and "'acme.replies*'" in refusal
    assert POLICY.route(topic) == Route("acme.replies", refusal)


def test_a_pattern_that_allows_freshet_topics_still_refuses_them() -> None:
    # a new Settings, not model_copy: that would carry the cached reply_topics_glob along
    policy = ReplyPolicy.of(Settings(**{**SETTINGS.model_dump(), "reply_topic_pattern": "acme*"}))
    assert policy.refusal("acme.answers") is None
    assert policy.refusal("acme.applied") is not None
    assert policy.refusal("acme-indexer-doc-state-changelog") is not None


def test_no_requested_topic_means_the_default() -> None:
    assert POLICY.route(None) == Route("acme.replies")
    assert POLICY.route("") == Route("acme.replies")


def allowed(deadline_ms: int | None, sent_at: float | None, now: float = 1000.0, max_wait_ms: int = 60_000) -> float:
    return seconds_allowed(deadline_ms, sent_at, now, default_deadline_ms=30_000, max_wait_ms=max_wait_ms)


def test_the_deadline_counts_from_the_kafka_timestamp() -> None:
    assert allowed(5000, sent_at=998.0) == pytest.approx(3.0)
    assert allowed(None, sent_at=990.0) == pytest.approx(20.0)
    assert allowed(5000, sent_at=990.0) == pytest.approx(-5.0)  # read after its deadline


def test_a_timestamp_in_the_future_never_extends_the_deadline() -> None:
    assert allowed(1500, sent_at=1000.0 + 3600) == pytest.approx(1.5)
    assert allowed(None, sent_at=1000.0 + 3600) == pytest.approx(30.0)


def test_max_wait_bounds_every_deadline() -> None:
    assert allowed(600_000, sent_at=1000.0, max_wait_ms=2000) == pytest.approx(2.0)
    assert allowed(600_000, sent_at=1000.0 + 3600, max_wait_ms=2000) == pytest.approx(2.0)


@pytest.mark.parametrize("sent_at", [None, 0.0, -0.001])
def test_an_unknown_timestamp_counts_the_deadline_from_receipt(sent_at: float | None) -> None:
    assert allowed(4000, sent_at=sent_at) == pytest.approx(4.0)


def test_an_error_reply_is_addressed_by_the_body_else_the_headers() -> None:
    def address(value: bytes | None, rid: bytes | None = None, topic: bytes | None = None) -> tuple[str, str] | None:
        out = addressed_error(value, rid, topic, code="processing_error", message="KeyError: 'x'", policy=POLICY)
        if out is None:
            return None
        assert out[1].status == "error" and out[1].error is not None and out[1].error.code == "processing_error"
        return out[0], out[1].request_id

    assert address(b'{"request_id": "r1", "reply_to": "acme.replies.bob"}') == ("acme.replies.bob", "r1")
    assert address(b'{"request_id": "r1", "reply_to": "acme.applied"}') == ("acme.replies", "r1")
    assert address(b"not json", rid=b"r2", topic=b"acme.replies.eve") == ("acme.replies.eve", "r2")
    assert address(b"not json", rid=b"r\xff", topic=b"acme.replies\xfe") == ("acme.replies", "r\ufffd")
    assert address(b'{"request_id": "\\ud800"}') is None  # no id a reply could carry: dead-letter it
    assert address(None) is None
