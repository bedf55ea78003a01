from schemas.deadletter import REASON, SOURCE_OFFSET, dead_letter_headers


def test_keeps_original_headers_and_adds_reason() -> None:
    headers = dict(dead_letter_headers([("trace", b"abc"), (REASON, b"spoofed")], reason="invalid_json",
                                       error="bad", topic="t", partition=2, offset=41, worker="indexer"))
    assert headers["trace"] == b"abc"
    assert headers[REASON] == b"invalid_json"
    assert headers[SOURCE_OFFSET] == b"41"
