"""Issue 10, second acceptance test: a broker and a Weaviate node die mid-stream; searches go on.

While a seeded mixed stream is indexed by 2 indexers and searches run through a
:class:`~freshet.client.SearchClient` at a steady rate (3 a second, 4 s deadline), one Kafka broker
(the active KRaft controller: the slowest to fail over) is killed with ``kill -9`` and restarted after
``CHAOS_OUTAGE_SECONDS / 2``, then one Weaviate node (``weaviate-2``, the node ``indexer-2`` and
``query-2`` talk to) is killed and restarted after ``CHAOS_OUTAGE_SECONDS``. Checked: no search gets
an error reply; every search is answered ``ok`` within its deadline but those Kafka itself held up
(below); the changes keep being handled while each node is down; the final index is exact.

Kafka accepts no write (``acks=all``) and serves no new record on any partition whose replicas include
the killed broker until the controller fences it, 2 s after its last heartbeat here; when the killed
broker was the active controller, a new controller is elected first (about 3 s), then fences it (2 s
more). A search whose request or reply waits out that failover may be late, or may reach the query
worker after its deadline and be dropped unanswered, or with too little time left and be answered
``timeout`` (as the contract says). So searches sent from ``deadline + 1 s`` before the kill until
``CATCH_UP_S`` after the fence (read from the brokers' logs) may be late, ``timeout`` or unanswered,
every unanswered one must be a request the query workers counted as dropped after its deadline, and
all others must be ``ok`` in time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import structlog

from ops import faults
from tests.chaos.cluster.conftest import opted_in
from tests.chaos.cluster.nodes import ClusterNodes
from tests.chaos.cluster.scenario import ClusterScenario
from tests.chaos.conftest import Scale
from tests.chaos.observe import AppliedFollower, Search, outgoing
from tests.chaos.scenario import Scenario
from tests.chaos.workload import generate
from workers.embedding import SentenceTransformerEmbedder

pytestmark = [pytest.mark.chaos, opted_in]
log = structlog.get_logger(__name__)

NODE = "weaviate-2"
#: After the fence, the clients and workers find the new partition leaders (metadata refresh, reconnects).
CATCH_UP_S = 3.0
#: Longer than this from the kill to the fence is a failure of the cluster's setup, not a failover.
MAX_FENCE_S = 15.0
STATS = ("requests", "ok", "errors", "timeouts", "expired_dropped", "reply_failures", "unreachable")


def test_broker_and_weaviate_node_killed_mid_stream(cluster: ClusterNodes, chaos_dir: Path,
                                                    cluster_report_dir: Path, scale: Scale,
                                                    embedder: SentenceTransformerEmbedder) -> None:
    wl = generate(scale.events, seed=scale.seed + 20, prefix="nodes")
    broker_down = max(5.0, scale.outage_seconds / 2)
    windows: dict[str, tuple[float, float, float, float]] = {}  # name -> monotonic and wall-clock start, end
    held: list[tuple[float, float]] = []  # monotonic spans of searches Kafka's failover may hold up
    with ClusterScenario(cluster, chaos_dir / "cluster", "cluster-node-kills", cluster_report_dir, rate=scale.rate,
                         search_rate=3.0, search_deadline_s=4.0) as sc:
        sc.row.events = len(wl.records)

        def down(name: str, kind: str, share: float, seconds: float) -> None:
            sc.wait_published(share)
            if kind == "kafka":
                name = cluster.active_controller()
            start, wall = time.monotonic(), time.time()
            faults.kill9(cluster.pidfile(name))
            log.info("chaos_node_killed", node=name, published=sc.publisher.sent)
            time.sleep(seconds)
            if kind == "kafka":
                failover(name, start, wall)
            cluster.restart(kind)
            log.info("chaos_node_restarted", node=name)
            windows[name] = (start, time.monotonic(), wall, time.time())
            sc.fault_ended()

        def failover(name: str, start: float, wall: float) -> None:
            fenced, elected = cluster.fenced(_node_id(name), wall)
            if fenced is None:
                sc.fail(f"no broker logged fencing {name} within {time.time() - wall:.0f} s of its kill")
                return
            took = fenced - wall
            sc.row.notes.append(f"{name} fenced {took:.1f} s after its kill"
                                + (" (it was the active controller: a new one was elected first)" if elected else ""))
            if took > MAX_FENCE_S:
                sc.fail(f"{name} fenced only {took:.1f} s after its kill (more than {MAX_FENCE_S:.0f} s)")
            held.append((start - sc.search_deadline_s - 1.0, start + took + CATCH_UP_S))

        def kills(s: Scenario) -> None:
            down("kafka", "kafka", 0.25, broker_down)
            broker = next(iter(windows))
            down(NODE, "weaviate", 0.6, scale.outage_seconds)
            s.row.faults = (f"kill -9 {broker}, the active controller (down {_length(windows[broker])}), then kill -9 "
                            f"{NODE} (down {_length(windows[NODE])}), each restarted")

        sc.stream(outgoing(wl.records, sc.settings.topic_changes), kills)
        sc.finish(wl.final, embedder, good=range(len(wl.records)))
        sc.note_logs()
        stats = sc.worker_stats("query")
        sc.row.notes.append("query workers' /stats: " + "; ".join(
            f"{name}: " + ", ".join(f"{k} {v}" for k, v in st.items() if k in STATS)
            for name, st in stats.items()))
        for name, (start, end, wall0, wall1) in windows.items():
            during = sc.searches.between(start, end)
            sc.row.notes.append(f"searches while {name} was down: {_summary(during)}")
            handled = _handled_between(sc.follower, wall0, wall1)
            stalled = _stalled(sc, handled, wall0, wall1)
            sc.row.notes.append(f"changes handled while {name} was down, per partition: {handled}")
            if stalled:
                sc.fail(f"indexing stopped on partitions {stalled} while {name} was down (records were waiting "
                        f"there; handled per partition: {handled})")
        searches = sc.searches.searches
        in_failover = [s for s in searches if any(a <= s.sent <= b for a, b in held)]
        # late, dropped after its deadline, or answered "timeout" (its deadline passed while it was served): no error
        excused = {id(s) for s in in_failover if s.status in ("ok", "no_reply", "timeout")}
        bad = [s for s in searches if not _answered(s) and id(s) not in excused]
        unanswered = sum(1 for s in searches if s.status == "no_reply")
        dropped = sum(int(st.get("expired_dropped", 0)) for st in stats.values())
        sc.row.notes.append(f"all searches: {_summary(searches)}")
        sc.row.notes.append(f"searches sent while Kafka's failover could hold them up: {_summary(in_failover)}")
        if unanswered > dropped:
            sc.fail(f"{unanswered} searches unanswered but the query workers dropped only {dropped} requests after "
                    "their deadline: the others were lost")
        if bad:
            sc.row.notes.append(f"when the searches not answered 'ok' were sent: {_timeline(bad, windows)}")
            first = sc.searches.searches[0].sent
            sc.row.notes.append("those searches, sent (s after the first search) -> answered after (s): " + ", ".join(
                f"{s.sent - first:.1f} -> {'none' if s.done is None else f'{s.done - s.sent:.1f}'}" for s in bad[:20]))
        if bad:
            sc.fail(f"{len(bad)} of {len(searches)} searches not answered 'ok' within their deadline (error replies, "
                    f"or sent outside Kafka's failover): "
                    f"{_summary(bad)}")
    assert not sc.row.failures, "\n".join(sc.row.failures)


def _stalled(sc: ClusterScenario, handled: dict[int, int], start: float, end: float) -> list[int]:
    """Partitions that made no progress between ``start`` and ``end`` although records published
    before ``end`` were waiting there."""
    with sc.follower.lock:
        marks = list(sc.follower.marks)
    waiting: dict[int, int] = {}
    for (p, o), at in zip(sc.publisher.positions, sc.publisher.sent_at, strict=False):
        if p >= 0 and at < end - 5.0:  # published well before the end: due to be handled by then
            waiting[p] = max(waiting.get(p, 0), o + 1)
    out = []
    for p, need in sorted(waiting.items()):
        through = max((th for t, q, th in marks if q == p and t < start), default=0)
        if through < need and not handled.get(p):
            out.append(p)
    return out


def _timeline(searches: list[Search], windows: dict[str, tuple[float, float, float, float]]) -> str:
    """Per 10 s slot (UTC, when sent), how many of ``searches``; fault windows marked."""
    offset = time.time() - time.monotonic()
    slots: dict[str, int] = {}
    for s in searches:
        slot = time.strftime("%H:%M:%S", time.gmtime((s.sent + offset) // 10 * 10))
        slots[slot] = slots.get(slot, 0) + 1
    marks = ", ".join(f"{name} down {time.strftime('%H:%M:%S', time.gmtime(w[2]))}-"
                      f"{time.strftime('%H:%M:%S', time.gmtime(w[3]))}" for name, w in windows.items())
    return f"{slots} ({marks})"


def _node_id(broker: str) -> int:
    """``kafka`` is node 1, ``kafka-3`` node 3."""
    return int(broker.rpartition("-")[2]) if "-" in broker else 1


def _length(window: tuple[float, float, float, float]) -> str:
    return f"{window[1] - window[0]:.0f} s with its restart"


def _answered(s: Search) -> bool:
    return s.status == "ok" and s.within_deadline


def _summary(searches: list[Search]) -> str:
    out: dict[str, int] = {}
    for s in searches:
        key = s.status if s.code is None else f"{s.status}:{s.code}"
        if s.status == "ok" and not s.within_deadline:
            key += " (late)"
        out[key] = out.get(key, 0) + 1
    return f"{len(searches)} sent: {out}"


def _handled_between(follower: AppliedFollower, start: float, end: float) -> dict[int, int]:
    """Per changes partition, how far its progress mark moved between ``start`` and ``end`` (wall clock)."""
    with follower.lock:
        marks = list(follower.marks)
    out: dict[int, int] = {}
    for p in sorted({q for _, q, _ in marks}):
        before = max((th for t, q, th in marks if q == p and t < start), default=0)
        upto = max((th for t, q, th in marks if q == p and t <= end), default=0)
        out[p] = max(0, upto - before)
    return out
