"""Issue 10, third acceptance test: two query workers, continuous searches, documents rewritten.

Documents are rewritten round after round (every version shares some paragraphs with the one
before and changes others) while clients search them all the time, their requests spread over the
cluster's two query workers. Each reply is checked from its hit texts alone, as
``tests/integration/test_consistency.py`` does on one node: for every document among its hits, one
published version holds every hit text (no reply mixes versions) and it is the version the reply
names. Clients that use a :class:`~freshet.client.Session` must never see a document at an older
version after a newer one; one client without a session runs beside them, and what it sees is
reported (not asserted: without a session, reading back in time is allowed). Then the tier's
checks: the final index is exact.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from freshet.client import SearchClient, Session
from freshet.errors import TransientError
from freshet.settings import Settings
from schemas.change import ChangeEvent, document_key
from schemas.search import SearchReply
from tests.chaos.cluster.conftest import opted_in
from tests.chaos.cluster.nodes import ClusterNodes
from tests.chaos.cluster.scenario import ClusterScenario
from tests.chaos.conftest import Scale
from tests.chaos.observe import outgoing
from tests.chaos.workload import Final, Record
from workers.embedding import SentenceTransformerEmbedder

pytestmark = [pytest.mark.chaos, opted_in]

PLACES = ("kelp forest", "salt marsh", "coral reef", "tidal flat", "mangrove swamp", "sea grass meadow",
          "estuary", "lagoon", "sand dune", "rock pool", "fjord", "shingle beach")
READERS = (("session-vector", "vector", True), ("session-hybrid", "hybrid", True),
           ("session-keyword", "keyword", True), ("no-session", "hybrid", False))


def content(d: int, v: int) -> str:
    """Six paragraphs: the even ones change in every version, the odd ones every third version."""
    place, paras = PLACES[d], []
    for j in range(6):
        rev = v if j % 2 == 0 else v // 3
        paras.append(f"Field notes on the {place}, paragraph {j}, revision {rev}: the {place} shelters many "
                     f"species, and observers record the tides, the light and the water there ({j}/{rev}).")
    return "\n\n".join(paras)


def event(d: int, v: int) -> ChangeEvent:
    return ChangeEvent(doc_id=f"sea/{d}.txt", op="upsert", version=v, content=content(d, v),
                       content_type="text/plain", event_id=f"good-sessions-{d}-{v}")


class Reader(threading.Thread):
    """One client searching back to back until halted; every reply kept in the order received."""

    def __init__(self, settings: Settings, label: str, mode: str, with_session: bool, halt: threading.Event) -> None:
        super().__init__(daemon=True, name=f"chaos-{label}")
        self.settings, self.label, self.mode, self.with_session, self.halt = settings, label, mode, with_session, halt
        self.replies: list[SearchReply] = []
        self.failures: list[str] = []

    def run(self) -> None:
        s = self.settings
        client = SearchClient(s.bootstrap_servers, request_topic=s.topic_requests, reply_topic=s.topic_replies,
                              timeout=15, session=Session() if self.with_session else None)
        try:
            i = 0
            while not self.halt.is_set():
                i += 1
                try:
                    self.replies.append(client.search(f"field notes on the {PLACES[i % len(PLACES)]}, tides and "
                                                      f"light", mode=self.mode, top_k=40))
                except TransientError as exc:
                    self.failures.append(str(exc)[:200])
        finally:
            client.close()


def check(reader: Reader, rounds: int) -> dict[str, list[str]]:
    """Violations by kind: ``error`` (not ok), ``mixed``/``label`` (hit texts vs versions) and
    ``back_in_time`` (a version below one this client saw before)."""
    out: dict[str, list[str]] = defaultdict(list)
    highest: dict[str, int] = {}
    for reply in reader.replies:
        if reply.status != "ok":
            out["error"].append(f"{reply.status} {reply.error}")
            continue
        by_doc: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for h in reply.hits:
            by_doc[h.doc_id].append((h.text, h.version))
        for doc, hits in by_doc.items():
            d = int(doc.split("/")[1].split(".")[0])
            fits = [v for v in range(1, rounds + 1) if all(t in content(d, v) for t, _ in hits)]
            labels = sorted({v for _, v in hits})
            if not fits:
                out["mixed"].append(f"{doc}: no version holds all {len(hits)} hit texts (labelled {labels})")
            elif len(labels) != 1 or labels[0] not in fits:
                out["label"].append(f"{doc}: the reply names {labels}, its hit texts fit {fits}")
            if labels and labels[0] < highest.get(doc, 0):
                out["back_in_time"].append(f"{doc}: v{labels[0]} after v{highest[doc]}")
            highest[doc] = max(highest.get(doc, 0), *labels)
    return out


def test_two_query_workers_answer_consistently_while_documents_are_rewritten(
        cluster: ClusterNodes, chaos_dir: Path, cluster_report_dir: Path, scale: Scale,
        embedder: SentenceTransformerEmbedder) -> None:
    rounds = max(6, scale.events // 5 // len(PLACES))
    events = [event(d, v) for v in range(1, rounds + 1) for d in range(len(PLACES))]
    records = [Record(ev.key, ev, "edit") for ev in events]
    final = {document_key(None, ev.doc_id): Final(ev.doc_id, None, rounds, False, ev) for ev in events[-len(PLACES):]}
    halt = threading.Event()
    with ClusterScenario(cluster, chaos_dir / "cluster", "cluster-sessions", cluster_report_dir,
                         rate=max(2.0, scale.rate / 5), search_rate=1.0) as sc:
        sc.row.events = len(records)
        sc.row.faults = f"none: {len(READERS)} clients searching back to back over 2 query workers"
        before = {name: st.get("requests", 0) for name, st in sc.worker_stats("query").items()}
        readers = [Reader(sc.settings, label, mode, with_session, halt) for label, mode, with_session in READERS]
        for r in readers:
            r.start()
        try:
            sc.stream(outgoing(records, sc.settings.topic_changes), lambda s: None)
            time.sleep(5)  # a few more replies while the last rounds are applied
        finally:
            halt.set()
            for r in readers:
                r.join(timeout=60)
        after = {name: st.get("requests", 0) for name, st in sc.worker_stats("query").items()}
        sc.finish(final, embedder, good=range(len(records)))
        sc.note_logs()
        answered = {name: after.get(name, 0) - n for name, n in before.items()}
        sc.row.notes.append(f"requests answered per query worker during the rewrites: {answered}")
        if len(answered) < 2 or min(answered.values()) <= 0:
            sc.fail(f"one query worker answered everything: {answered}")
        for r in readers:
            found = check(r, rounds)
            versions = sorted({h.version for rep in r.replies for h in rep.hits})
            docs = sum(len({h.doc_id for h in rep.hits}) for rep in r.replies)
            sc.row.notes.append(f"{r.label} ({r.mode}): {len(r.replies)} replies, {docs} document checks, versions "
                                f"{versions[:1]}..{versions[-1:]} ({len(versions)} distinct), {len(r.failures)} "
                                f"without a reply, violations {({k: len(v) for k, v in found.items()})}"
                                + (f", e.g. {[v[0] for v in found.values()]}" if found else ""))
            allowed = {"back_in_time"} if not r.with_session else set()
            if set(found) - allowed or r.failures:
                sc.fail(f"{r.label}: {({k: v[:3] for k, v in found.items() if k not in allowed})}, "
                        f"{len(r.failures)} without a reply {r.failures[:2]}")
            if len(versions) < 3:
                sc.fail(f"{r.label} saw versions {versions} only: not searching during the rewrites")
    assert not sc.row.failures, "\n".join(sc.row.failures)
