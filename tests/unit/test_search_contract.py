import json

import pytest

from freshet.errors import InvalidEventError
from schemas.search import SearchRequest, header_text, parse_request, reply_to_of, request_id_of


def test_defaults() -> None:
    req = parse_request(json.dumps({"request_id": "r1", "query": "kafka"}).encode())
    assert (req.mode, req.top_k, req.alpha) == ("hybrid", 10, None)  # None: the worker's FRESHET_HYBRID_ALPHA


@pytest.mark.parametrize(
    "body",
    [
        {"request_id": "r1", "query": "q", "mode": "fuzzy"},
        {"request_id": "r1", "query": "q", "top_k": 0},
        {"request_id": "r1", "query": "q", "top_k": 101},
        {"request_id": "r1", "query": ""},
        {"request_id": "r1", "query": "q" * 5000},
        {"request_id": "r1", "query": "q", "alpha": 1.5},
    ],
)
def test_bad_requests_are_explained(body: dict[str, object]) -> None:
    with pytest.raises(InvalidEventError) as err:
        parse_request(json.dumps(body).encode())
    assert err.value.reason == "schema"
    assert request_id_of(json.dumps(body).encode()) == "r1"


def test_unreadable_request_has_no_id() -> None:
    with pytest.raises(InvalidEventError) as err:
        parse_request(b"\x00garbage")
    assert err.value.reason == "invalid_json"
    assert request_id_of(b"\x00garbage") is None


def test_round_trip() -> None:
    req = SearchRequest(request_id="x", query="q", mode="keyword", top_k=3)
    assert parse_request(req.model_dump_json().encode()) == req


def test_an_id_or_topic_no_reply_could_carry_is_not_read() -> None:
    body = b'{"request_id": "\\ud800", "query": "q", "reply_to": "x\\udfff"}'  # lone surrogates: valid JSON
    with pytest.raises(InvalidEventError) as err:
        parse_request(body)
    assert err.value.reason == "schema"
    assert request_id_of(body) is None and reply_to_of(body) is None


def test_deep_nesting_is_invalid_json_not_a_crash() -> None:
    with pytest.raises(InvalidEventError) as err:
        parse_request(b"[" * 100_000)
    assert err.value.reason == "invalid_json"
    assert request_id_of(b"[" * 100_000) is None


def test_headers_read_as_text_never_raise() -> None:
    assert header_text(b"acme.replies") == "acme.replies"
    assert header_text(b"acme.\xff") == "acme.\ufffd"
    assert header_text(None) is None and header_text(b"") is None
