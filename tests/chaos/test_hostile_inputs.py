"""Scenario 5: hostile inputs on the changes and request topics, interleaved with good events.

Every bad change event must reach the dead-letter topic; every bad request must get an error reply
(or, without a readable id, be dead-lettered); requests that can never be met must get a timeout
reply within the worker's own bound; every good event and every pathological-but-valid one must
be applied; no worker may restart and ``/healthz`` must answer ready throughout.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from freshet.client import read_to_end
from tests.chaos import hostile
from tests.chaos.conftest import Scale
from tests.chaos.observe import Outgoing, log_events
from tests.chaos.scenario import Scenario
from tests.chaos.services import Services
from tests.chaos.workload import Final, Workload, generate
from workers.embedding import SentenceTransformerEmbedder

pytestmark = pytest.mark.chaos

REPLY_SLACK_S = 3.0


def _interleave(good: Workload, bad: list[hostile.Hostile], topics: dict[str, str], seed: int) -> list[Any]:
    """Good records in their order with the hostile ones scattered between them (seeded)."""
    rnd = random.Random(seed)
    slots = sorted(rnd.random() for _ in bad)
    items: list[Any] = []
    g = 0
    for i, h in enumerate(bad):
        while g < len(good.records) and g / max(1, len(good.records)) < slots[i]:
            items.append(good.records[g])
            g += 1
        items.append(h)
    items += good.records[g:]
    return items


def _outgoing(item: Any, topics: dict[str, str]) -> Outgoing:
    if isinstance(item, hostile.Hostile):
        ts = int(time.time() * 1000) + item.future_ms if item.future_ms else None
        return Outgoing(topics[item.target], item.key, item.value, item.headers, ts)
    return Outgoing(topics["changes"], item.key.encode(), item.value)


def test_hostile_inputs_are_dead_lettered_or_answered(live_services: Services, chaos_dir: Path, report_dir: Path,
                                                      scale: Scale, embedder: SentenceTransformerEmbedder) -> None:
    good = generate(max(200, scale.events // 5), seed=scale.seed + 5, prefix="hostile-good")
    with Scenario(live_services, chaos_dir, "hostile-inputs", report_dir, rate=max(scale.rate, 150.0),
                  search_rate=2.0, search_deadline_s=5.0) as sc:
        s = sc.settings
        topics = {"changes": s.topic_changes, "requests": s.topic_requests, "applied": s.topic_applied,
                  "deadletter": s.topic_dead_letter, "metrics": s.topic_metrics}
        bad = hostile.mix(scale.hostile, topics)
        items = _interleave(good, bad, topics, scale.seed + 6)
        out = [_outgoing(i, topics) for i in items]
        sc.row.events, sc.row.bad_inputs = len(good.records), len(bad)
        sc.row.faults = "none (hostile input only)"
        assert sc.pipeline is not None
        before = sc.pipeline.identities()
        sc.stream(out, lambda _s: None)

        final: dict[str, Final] = dict(good.final)
        for h in bad:
            if h.expect == "applied" and h.event is not None:
                final[h.event.key] = Final(h.event.doc_id, h.event.tenant, h.event.version, False, h.event)
        applied_at = [n for n, i in enumerate(items) if not isinstance(i, hostile.Hostile) or i.expect == "applied"]
        # without --vectors: no fault here could corrupt a vector, and re-embedding ~3,000 chunks costs minutes
        sc.finish(final, embedder, good=applied_at, vectors=False)
        _check_hostile(sc, items, topics)
        after = sc.pipeline.identities()
        if after != before:
            sc.fail(f"a worker restarted or exited: before {before}, after {after}")
        if sc.health.bad:
            first = sc.health.bad[0]
            sc.fail(f"/healthz not ready {len(sc.health.bad)} times of {sc.health.polls} polls; first: "
                    f"{first[1]} {first[2]}")
        for role in ("indexer", "query"):
            crashed = [r for r in log_events(sc.pipeline.log(role)) if "rash" in str(r.get("event", ""))]
            if crashed:
                sc.fail(f"{role}: {len(crashed)} crash lines in its log, first: {str(crashed[0])[:400]}")
        searches = sc.searches.searches
        not_ok = [x for x in searches if x.status != "ok"]
        if not_ok:  # not a failure of the contract (a request read after its deadline is dropped), but a cost
            expired = len(log_events(sc.pipeline.log("query"), "request_expired_dropped"))
            sc.row.notes.append(f"{len(not_ok)} of {len(searches)} good searches (deadline "
                                f"{sc.search_deadline_s:.0f} s) unanswered; the query worker dropped {expired} "
                                "requests read after their deadline (request_expired_dropped)")
    assert not sc.row.failures, "\n".join(sc.row.failures)


def _check_hostile(sc: Scenario, items: list[Any], topics: dict[str, str]) -> None:
    """Every hostile record met its fate: a dead letter at its position, or the reply it is due."""
    s, pub = sc.settings, sc.publisher
    pos = {n: (pub.positions[n], pub.sent_at[n]) for n in range(min(len(items), len(pub.positions)))}
    letters = {(d.topic, d.partition, d.offset) for d in sc.letters}
    want_reply = {i.correlation for i in items if isinstance(i, hostile.Hostile) and i.expect in ("error", "timeout")}
    replies = _replies(s.bootstrap_servers, s.topic_replies, want_reply, timeout=60)
    misses: dict[str, list[str]] = {}
    for n, item in enumerate(items):
        if not isinstance(item, hostile.Hostile) or item.expect == "applied" or n not in pos:
            continue
        (part, off), sent = pos[n]
        why = ""
        if item.expect == "dead_letter":
            if (topics[item.target], part, off) not in letters:
                why = f"not dead-lettered ({item.target} {part}/{off}, {_show(item.value)})"
        else:
            got = replies.get(item.correlation or b"")
            if got is None:
                why = f"no reply ({_show(item.value)})"
            elif got[0] != item.expect:
                why = f"answered {got[0]}:{got[2]} instead of {item.expect} ({_show(item.value)})"
            elif item.expect == "timeout" and got[1] / 1000 - sent > s.query_max_wait_ms / 1000 + REPLY_SLACK_S:
                why = f"timeout reply after {got[1] / 1000 - sent:.1f} s (bound {s.query_max_wait_ms / 1000:.0f} s)"
        if why:
            misses.setdefault(item.category, []).append(why)
    for category, whys in sorted(misses.items()):
        total = sum(1 for i in items if isinstance(i, hostile.Hostile) and i.category == category)
        sc.fail(f"{category}: {len(whys)} of {total} not handled as due, e.g. {whys[:3]}")


def _replies(bootstrap: str, topic: str, wanted: set[bytes | None],
             timeout: float) -> dict[bytes, tuple[str, int, str | None, str]]:
    """correlation id -> (status, timestamp ms, error code, topic) of the replies on ``topic``."""
    from schemas.search import SearchReply

    deadline = time.monotonic() + timeout
    seen = -1
    while True:
        out: dict[bytes, tuple[str, int, str | None, str]] = {}
        for r in read_to_end(bootstrap, topic):
            corr = dict(r.headers or []).get("correlation_id")
            if corr is None or corr not in wanted or r.value is None:
                continue
            try:
                rep = SearchReply.model_validate_json(r.value)
            except ValueError:
                continue
            out.setdefault(corr, (rep.status, r.timestamp, rep.error.code if rep.error else None, topic))
        if len(out) >= len(wanted) or len(out) == seen or time.monotonic() > deadline:
            return out  # all there, or none came in the last 10 s: the rest will not come
        seen = len(out)
        time.sleep(10)


def _show(value: bytes | None) -> str:
    text = repr(value[:80]) if value is not None else "None"
    return text + (f"… ({len(value)} bytes)" if value is not None and len(value) > 80 else "")
