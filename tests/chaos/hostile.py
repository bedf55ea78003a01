"""Hostile records for the changes and request topics, drawn with hypothesis (derandomized).

Each :class:`Hostile` says what the pipeline must do with it (``expect``):

* ``dead_letter``: a change event or an unanswerable request that breaks its contract must reach
  the dead-letter topic, with its source position;
* ``error``: a request whose id can be read (body or ``correlation_id`` header) must get an
  ``error`` reply on the default reply topic, correlated by that header;
* ``timeout``: a request that can never be answered in time (an unmeetable fence) must get a
  ``timeout`` reply within the worker's own bound (``query_max_wait_ms``), whatever its timestamp;
* ``applied``: a contract-valid but pathological change (absurd Markdown, control characters in
  the content, a non-UTF-8 Kafka key) must be indexed like any other.

Whether a record is bad is decided by the contract's own parsers (:func:`parse_change`,
:func:`parse_request` and the filter check), so a draw that happens to be valid is discarded, never
miscounted. :func:`draw` runs a strategy for exactly ``n`` examples with a fixed seed: CI sees the
same records every run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from freshet.errors import InvalidEventError
from schemas.change import ChangeEvent, parse_change
from schemas.search import parse_request
from workers.search import check_filter


@dataclass(frozen=True)
class Hostile:
    category: str
    expect: str
    """dead_letter | error | timeout | applied"""
    target: str
    """changes | requests"""
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    correlation: bytes | None = None
    future_ms: int = 0
    """Forge the record's timestamp this far in the future."""
    event: ChangeEvent | None = None
    """For ``applied``: the event the index must hold."""


def draw(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """``n`` examples of ``strategy`` (fewer only if its space is smaller), the same every run."""
    out: list[Any] = []

    @settings(max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(x: Any) -> None:
        out.append(x)

    if n > 0:
        collect()
    return out


# --- change events ----------------------------------------------------------------------------
MAX_BYTES = 200_000
"""The chaos pipelines' FRESHET_MAX_DOCUMENT_BYTES."""

_ident = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=30)
_control = st.text(st.characters(whitelist_categories=("Cc",)), min_size=1, max_size=4)


def _base(doc_id: str, version: int = 1) -> dict[str, Any]:
    return {"doc_id": doc_id, "op": "upsert", "version": version, "content": "# Hostile\n\nA small body of text."}


def _bad_change(key: bytes | None, value: bytes | None) -> bool:
    try:
        parse_change(value, key, max_bytes=MAX_BYTES)
    except InvalidEventError:
        return True
    except Exception:  # noqa: BLE001 - a crash of the contract parser is bad input too (and a finding)
        return True
    return False


def _change(category: str) -> Callable[[tuple[bytes | None, bytes | None]], Hostile]:
    return lambda kv: Hostile(category, "dead_letter", "changes", kv[0], kv[1])


_WRONG = {
    "doc_id": st.one_of(st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2), st.just(""),
                        st.just("x" * 513), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    "op": st.one_of(st.sampled_from(["UPSERT", "insert", "", "del", "upsert "]), st.integers(), st.none()),
    "version": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63), st.just(1.5), st.just("one"),
                         st.none(), st.just([1])),
    "content": st.one_of(st.integers(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                                                                                          st.text(max_size=3))),
    "metadata": st.one_of(st.just({"a": {"b": 1}}), st.just({"a": [1, 2]}), st.just({"a": None}), st.just("x"),
                          st.just([1]), st.dictionaries(st.text(max_size=5), st.dictionaries(st.text(max_size=2),
                                                                                            st.integers()),
                                                        min_size=1, max_size=2)),
    "tenant": st.one_of(st.just(""), st.integers(), st.just(["t"]), st.just("t" * 129)),
    "content_type": st.one_of(st.sampled_from(["text/html", "application/json", ""]), st.integers()),
    "event_time": st.sampled_from(["yesterday", "2026-13-45T00:00:00Z", "", "now"]),
    "title": st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2)),
    "unknown_field": st.integers(),
}


@st.composite
def _wrong_types(draw_: st.DrawFn) -> tuple[bytes | None, bytes | None]:
    raw = _base(draw_(_ident))
    for name in draw_(st.lists(st.sampled_from(sorted(_WRONG)), min_size=1, max_size=3, unique=True)):
        raw[name] = draw_(_WRONG[name])
    if draw_(st.booleans()) and draw_(st.booleans()):
        raw = draw_(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=10), st.none()))
    return b"k", json.dumps(raw).encode()


def _nested(depth: int, inside: str) -> str:
    return "[" * depth + inside + "]" * depth


change_strategies: dict[str, st.SearchStrategy[Hostile]] = {
    "invalid_json": st.one_of(
        st.text(max_size=200).map(lambda t: (b"k", ("{" + t).encode())),
        st.integers(1, 60).map(lambda n: (b"k", json.dumps(_base(f"cut/{n}")).encode()[:n])),
    ).filter(lambda kv: _bad_change(*kv)).map(_change("invalid_json")),
    "invalid_utf8": st.tuples(
        st.binary(max_size=100), st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80",
                                                  b"\xe2\x82", b"\xc0\xaf"]), st.binary(max_size=100),
    ).map(lambda t: (b"k", t[0] + t[1] + t[2])).filter(lambda kv: _bad_change(*kv)).map(_change("invalid_utf8")),
    "wrong_types": _wrong_types().filter(lambda kv: _bad_change(*kv)).map(_change("wrong_types")),
    "huge": st.tuples(st.integers(MAX_BYTES + 1, 5 * MAX_BYTES // 2), st.sampled_from(["content", "title", "metadata"]))
    .map(lambda t: (b"k", json.dumps({**_base("huge/doc"), **({t[1]: "x" * t[0]} if t[1] != "metadata"
                                                              else {"metadata": {"m": "y" * t[0]}})}).encode()))
    .map(_change("huge")),
    "deep": st.tuples(st.integers(200, 50_000), st.booleans()).map(
        lambda t: (b"k", (_nested(t[0], "1") if t[1] else
                          json.dumps(_base("deep/doc"))[:-1] + ', "metadata": {"m": ' + _nested(t[0], "") + "}}"
                          ).encode())).filter(lambda kv: _bad_change(*kv)).map(_change("deep")),
    "control_chars": st.tuples(_ident, _control, _ident, st.sampled_from(["doc_id", "tenant"])).map(
        lambda t: (b"k", json.dumps({**_base("ctl/doc"), t[3]: t[0] + t[1] + t[2]}).encode())
    ).filter(lambda kv: _bad_change(*kv)).map(_change("control_chars")),
    "invalid_keys": st.one_of(
        st.just(b""), st.binary(min_size=1, max_size=40).filter(lambda b: b.decode("utf-8", "replace") != b.decode(
            "utf-8", "ignore")),
        st.tuples(_ident, _control, _ident).map(lambda t: (t[0] + t[1] + t[2]).encode()),
        _ident.map(lambda t: ("\x1f" + t).encode()), st.just(("k" * 600).encode()),
    ).map(lambda k: (k, None)).filter(lambda kv: _bad_change(*kv)).map(_change("invalid_keys")),
    # (a tombstone without any key: Kafka clients refuse a record with neither, so the empty key stands in)
    "unknown_schema_version": st.one_of(st.text(max_size=8), st.integers(), st.floats(allow_nan=False)).filter(
        lambda v: str(v).split(".", 1)[0] != "1").map(
        lambda v: (b"k", json.dumps({**_base("sv/doc"), "schema_version": v}).encode())
    ).filter(lambda kv: _bad_change(*kv)).map(_change("unknown_schema_version")),
    "missing_content": _ident.map(lambda d: (b"k", json.dumps({"doc_id": d, "op": "upsert", "version": 3}).encode()))
    .filter(lambda kv: _bad_change(*kv)).map(_change("missing_content")),
}

_MD_PATTERNS = ("`", "```\n", "#", "- ", "  - x\n", "> ", "*", "**a ", "[", "[a](", "|", "| a |\n", "<div>", "\n",
                "e\u0301", "\u200d", "\u202e", "\U0001f600", "\x00", "\x07", "\\", "_", "~~~\n", "    ", "1. ", "---\n",
                "&amp;", "<!--", "a")


@st.composite
def _pathological(draw_: st.DrawFn) -> ChangeEvent:
    parts = draw_(st.lists(st.tuples(st.sampled_from(_MD_PATTERNS), st.integers(1, 4000)), min_size=1, max_size=3))
    content = "".join(p * n for p, n in parts)[:3000] or "x"
    return ChangeEvent(doc_id="placeholder", op="upsert", version=1, content=content)


def pathological(n: int) -> list[Hostile]:
    """Valid events with absurd Markdown, each a document of its own: they must be applied."""
    out = []
    for i, ev in enumerate(draw(_pathological(), n)):
        ev = ev.model_copy(update={"doc_id": f"hostile/md-{i:05d}", "event_id": f"hostile-md-{i}",
                                   "title": f"Pathological {i}"})
        out.append(Hostile("pathological_markdown", "applied", "changes", ev.key.encode(),
                           ev.model_dump_json(exclude_none=True).encode(), event=ev))
    return out


def odd_keys(n: int) -> list[Hostile]:
    """Valid events under a Kafka key that is not UTF-8 or not theirs: they must be applied."""
    keys = draw(st.one_of(st.binary(min_size=1, max_size=20), st.just(b"\xff\xfe"), st.just(b"")), n)
    out = []
    for i, key in enumerate(keys):
        ev = ChangeEvent(doc_id=f"hostile/key-{i:05d}", op="upsert", version=2, event_id=f"hostile-key-{i}",
                         title=f"Odd key {i}",
                         content=f"# Odd key {i}\n\nThis document arrives under a key that is not its own.")
        out.append(Hostile("odd_key_valid_event", "applied", "changes", key,
                           ev.model_dump_json(exclude_none=True).encode(), event=ev))
    return out


# --- search requests --------------------------------------------------------------------------
METADATA_SCHEMA = {"lang": "text", "year": "int", "tags": "text[]"}


def _bad_request(value: bytes | None) -> bool:
    try:
        req = parse_request(value)
        if req.filters is not None:
            check_filter(req.filters, METADATA_SCHEMA)
    except InvalidEventError:
        return True
    except Exception:  # noqa: BLE001 - e.g. RecursionError: bad input, and a finding if the worker crashes on it
        return True
    return False


def _req(rid: str, **fields: Any) -> dict[str, Any]:
    return {"request_id": rid, "query": "kafka offset replay", **fields}


_cond_field = st.one_of(st.sampled_from(["nope", "metadata_json", "text", "year ", "", "_id"]), _ident)
_bad_filter = st.one_of(
    st.fixed_dictionaries({"field": _cond_field, "op": st.just("eq"), "value": st.just("x")}),
    st.fixed_dictionaries({"field": st.just("year"), "op": st.sampled_from(["like", "EQ", "", "between"]),
                           "value": st.just(1)}),
    st.fixed_dictionaries({"field": st.just("lang"), "op": st.just("in"), "value": st.sampled_from(["en", [], 3])}),
    st.fixed_dictionaries({"field": st.just("year"), "op": st.sampled_from(["gt", "lt"]),
                           "value": st.sampled_from([True, "abc", {"a": 1}])}),
    st.sampled_from([{"and": []}, {"or": []}, {"and": {}}, [], "year>1", 7, {"not": {"field": "lang"}}]),
)


def _deep_filter(depth: int) -> bytes:
    """A filter nested ``depth`` levels deep (as text: too deep for a Python dict round trip)."""
    inner = '{"and": [' * depth + '{"field": "nope", "value": 1}' + "]}" * depth
    return ('{"request_id": "r", "query": "q", "filters": ' + inner + "}").encode()
_WRONG_REQ = {
    "top_k": st.sampled_from([0, 101, -1, "ten", 1.5, None]), "mode": st.sampled_from(["foo", 1, "", "HYBRID"]),
    "alpha": st.sampled_from([-0.1, 1.1, "half", None]), "deadline_ms": st.sampled_from([0, -5, 600_001, "soon"]),
    "group_by_doc": st.sampled_from(["maybe", 2, [True]]), "tenant": st.sampled_from([5, ["a"], {"t": 1}]),
    "consistency": st.sampled_from([{"doc_id": "x"}, [{"partition": -1, "offset": 0}], "strong", 5]),
    "query": st.sampled_from(["", 5, None, ["q"]]), "extra": st.integers(), "schema_version": st.sampled_from([2, []]),
}


def _with_corr(category: str, expect: str = "error") -> Callable[[tuple[int, dict[str, Any] | bytes]], Hostile]:
    def build(t: tuple[int, dict[str, Any] | bytes]) -> Hostile:
        n, body = t
        corr = f"hostile-{category}-{n}".encode()
        value = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Hostile(category, expect, "requests", corr, value, (("correlation_id", corr),), corr)
    return build


@st.composite
def _wrong_request(draw_: st.DrawFn) -> dict[str, Any]:
    raw = _req("r")
    for name in draw_(st.lists(st.sampled_from(sorted(_WRONG_REQ)), min_size=1, max_size=3, unique=True)):
        raw[name] = draw_(_WRONG_REQ[name])
    return raw


def _unique(s: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[int, Any]]:
    return st.tuples(st.integers(0, 2**40), s)


def _no_id(value: bytes) -> Hostile:
    return Hostile("request_without_id", "dead_letter", "requests", None, value)


request_strategies: dict[str, st.SearchStrategy[Hostile]] = {
    "bad_filters": _unique(st.one_of(_bad_filter.map(lambda f: json.dumps(_req("r", filters=f)).encode()),
                                     st.integers(50, 3000).map(_deep_filter))).filter(
        lambda t: _bad_request(t[1])).map(_with_corr("bad_filters")),
    "huge_query": _unique(st.tuples(st.integers(4001, 100_000), st.text(min_size=1, max_size=8)).map(
        lambda t: _req("r", query=(t[1] * (t[0] // len(t[1]) + 1))[:t[0]]))).filter(
        lambda t: len(json.dumps(t[1])) < MAX_RECORD_BYTES and _bad_request(json.dumps(t[1]).encode())).map(
        _with_corr("huge_query")),
    "wrong_request_types": _unique(_wrong_request()).filter(lambda t: _bad_request(json.dumps(t[1]).encode())).map(
        _with_corr("wrong_request_types")),
    "request_without_id": st.one_of(
        st.text(max_size=100).map(lambda t: ("{" + t).encode()),
        st.binary(max_size=60).map(lambda b: b"\xff" + b),
        st.fixed_dictionaries({"query": st.text(max_size=20)}).map(lambda d: json.dumps(d).encode()),
        st.sampled_from([b"[]", b"null", b"42", b'"text"', b'{"request_id": ""}', b'{"request_id": 7}']),
    ).filter(lambda v: _bad_request(v)).map(_no_id),
    "non_utf8_headers": st.tuples(st.integers(0, 2**40), st.sampled_from(["correlation_id", "reply_topic", "both"]),
                                  st.binary(min_size=1, max_size=10)).map(lambda t: _bad_headers(*t)),
    "foreign_reply_to": _unique(st.sampled_from(["{changes}", "{applied}", "{deadletter}", "{metrics}", "{requests}",
                                                 " ", "a/b", "x" * 300, "__consumer_offsets", "../../etc"])).map(
        _with_corr("foreign_reply_to")),
}


def _bad_headers(n: int, which: str, junk: bytes) -> Hostile:
    corr = b"\xff\xfe" + junk + str(n).encode()
    headers: list[tuple[str, bytes]] = []
    if which in ("correlation_id", "both"):
        headers.append(("correlation_id", corr))
    if which in ("reply_topic", "both"):
        headers.append(("reply_topic", b"\xff" + junk))
    if which == "reply_topic":
        corr = f"hostile-hdr-{n}".encode()
        headers.append(("correlation_id", corr))
    body = json.dumps(_req(f"hdr-{n}", top_k=0)).encode()  # invalid too: an error reply is due
    return Hostile("non_utf8_headers", "error", "requests", corr, body, tuple(headers), corr)


def foreign_reply_to(hostile: Hostile, topics: dict[str, str]) -> Hostile:
    """Fill in the pipeline's real topic names (``{changes}`` ...) and make the body a valid request."""
    raw = json.loads(hostile.value or b"")
    body = raw if isinstance(raw, str) else ""
    target = body.format(**topics) if "{" in body else body
    value = json.dumps(_req(hostile.correlation.decode() if hostile.correlation else "r", reply_to=target)).encode()
    return Hostile(hostile.category, "error", "requests", hostile.key, value, hostile.headers, hostile.correlation)


def future_fences(n: int) -> list[Hostile]:
    """Valid requests stamped 30 minutes ahead, fenced on a version or offset that never comes."""
    fences = draw(st.tuples(st.integers(0, 2**40), st.integers(500, 3000), st.booleans()), n)
    out = []
    for i, (m, deadline, doc) in enumerate(fences):
        corr = f"hostile-fence-{i}-{m}".encode()
        fence: Any = {"doc_id": "never/written.md", "min_version": 2**40} if doc else [
            {"partition": 0, "offset": 10**12}]
        body = json.dumps(_req(corr.decode(), deadline_ms=deadline, consistency=fence)).encode()
        out.append(Hostile("future_unmeetable_fence", "timeout", "requests", corr, body, (("correlation_id", corr),),
                           corr, future_ms=30 * 60 * 1000))
    return out


#: Share of each category in a mix (the fences and the huge records are capped: each costs much).
WEIGHTS = {
    "invalid_json": 6, "invalid_utf8": 5, "wrong_types": 8, "huge": 0.4, "deep": 3, "control_chars": 4,
    "invalid_keys": 4, "unknown_schema_version": 4, "missing_content": 2, "pathological_markdown": 1,
    "odd_key_valid_event": 0.5, "bad_filters": 16, "huge_query": 4, "wrong_request_types": 14,
    "request_without_id": 8, "non_utf8_headers": 6, "future_unmeetable_fence": 0.2, "foreign_reply_to": 6,
}
CAPS = {"huge": 40, "future_unmeetable_fence": 20, "pathological_markdown": 100}


def quotas(n: int) -> dict[str, int]:
    total = sum(WEIGHTS.values())
    out = {c: max(1, min(CAPS.get(c, n), round(n * w / total))) for c, w in WEIGHTS.items()}
    out["wrong_request_types"] += n - sum(out.values())  # the caps' remainder: a cheap category
    return out


#: Kafka's own limit (message.max.bytes, 1 MB) is not what is under test: every record stays below it.
MAX_RECORD_BYTES = 900_000


def mix(n: int, topics: dict[str, str]) -> list[Hostile]:
    """About ``n`` hostile records over every category (see :data:`WEIGHTS`), category by category."""
    q = quotas(n)
    out: list[Hostile] = []
    for name, strategy in {**change_strategies, **request_strategies}.items():
        out += draw(strategy, q[name])
    out = [foreign_reply_to(h, topics) if h.category == "foreign_reply_to" else h for h in out]
    out += pathological(q["pathological_markdown"]) + odd_keys(q["odd_key_valid_event"])
    out += future_fences(q["future_unmeetable_fence"])
    return [_numbered(h, i) for i, h in enumerate(out)]


def _numbered(h: Hostile, i: int) -> Hostile:
    """Make the correlation id unique (draws can repeat): replies are matched by it."""
    if h.correlation is None:
        return h
    corr = h.correlation + f"#{i}".encode()
    headers = tuple((k, corr if v == h.correlation else v) for k, v in h.headers)
    return Hostile(h.category, h.expect, h.target, h.key, h.value, headers, corr, h.future_ms, h.event)
