from schemas.deadletter import REASON, SOURCE_OFFSET, TRUNCATED, dead_letter_headers, fit_dead_letter


def test_keeps_original_headers_and_adds_reason() -> None:
    headers = dict(dead_letter_headers([("trace", b"abc"), (REASON, b"spoofed")], reason="invalid_json",
                                       error="bad", topic="t", partition=2, offset=41, worker="indexer"))
    assert headers["trace"] == b"abc"
    assert headers[REASON] == b"invalid_json"
    assert headers[SOURCE_OFFSET] == b"41"


def test_a_dead_letter_that_fits_is_kept_whole() -> None:
    headers = dead_letter_headers([("h", b"v")], reason="schema", error="e", topic="t", partition=0, offset=1,
                                  worker="indexer")
    assert fit_dead_letter(b"k", b"v" * 100, headers, 10_000) == (b"k", b"v" * 100, headers)


def test_an_oversized_dead_letter_keeps_its_head_and_says_what_was_cut() -> None:
    headers = dead_letter_headers([("trace", b"abc")], reason="oversized", error="too big", topic="t", partition=0,
                                  offset=1, worker="indexer")
    value = b"x" * 1_000_500
    key, cut, out = fit_dead_letter(b"doc.md", value, headers, 900_000)
    assert key == b"doc.md" and value.startswith(cut) and 800_000 < len(cut) < 900_000
    total = len(key) + len(cut) + sum(len(n) + len(v) for n, v in out)
    assert total <= 900_000
    named = dict(out)
    assert named[REASON] == b"oversized" and named["trace"] == b"abc"
    assert named[TRUNCATED].startswith(b"value 1000500 bytes, kept ")


def test_huge_keys_and_headers_are_cut_too() -> None:
    headers = dead_letter_headers([(f"h{i}", b"y" * 1000) for i in range(2000)], reason="schema", error="e",
                                  topic="t", partition=0, offset=1, worker="query")
    key, value, out = fit_dead_letter(b"k" * 500_000, b"v" * 10, headers, 100_000)
    assert key == b"k" * 256 and value == b"v" * 10
    named = dict(out)
    assert REASON in named and b"original headers dropped" in named[TRUNCATED]
    assert len(key) + len(value) + sum(len(n) + len(v) for n, v in out) <= 100_000
