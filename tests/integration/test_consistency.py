"""Consistent reads against the real services, checked the way a reader sees them.

While documents are rewritten, deleted and re-created, searches run all the time. Each reply is
checked from its hit texts alone (:func:`violations`): for every document among its hits, one
published version of that document must hold every hit text (so no reply mixes two versions),
and that is the version the reply names; and once a document's delete is in the worker's applied
view (a request fenced on the delete version has been answered), no reply shows it until it is
published again.

The second test runs the same workload and the same checks against the query worker's own
:class:`~workers.search.Searcher` with admission switched off (:class:`AdmitAllView`): the checks
must then find violations, which shows they can fail.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import pytest

from freshet.client import DocumentPublisher, SearchClient
from freshet.settings import Settings
from schemas.change import ChangeEvent
from schemas.search import DocFence, Hit, SearchReply, SearchRequest
from tests.integration.helpers import publish_and_wait
from tests.integration.inprocess_worker import AdmitAllView, InProcessWorker

pytestmark = pytest.mark.integration

PLACES = ["kelp forest", "salt marsh", "coral reef", "tidal flat", "mangrove swamp", "sea grass meadow"]
ROUNDS = 12
"""Versions 1..ROUNDS: in round r every live document is rewritten at version r."""
DELETED_AT = {0: 5, 1: 8}
"""Document -> the round whose version deletes it."""
RECREATED_AT = {0: 9}
"""Document -> the round it is published again (a version above its delete)."""
PAUSE = 0.3
MODES = ("vector", "hybrid", "keyword")

Search = Callable[[str, str, DocFence | None], SearchReply]
"""(query, mode, fence) -> reply, from whichever worker the test runs against."""


def content(d: int, v: int) -> str:
    """Six paragraphs: the even ones change in every version, the odd ones every third version,
    so consecutive versions share some chunks and differ in others."""
    place = PLACES[d]
    paras = []
    for j in range(6):
        rev = v if j % 2 == 0 else v // 3
        paras.append(f"Field notes on the {place}, paragraph {j}, revision {rev}: the {place} shelters many "
                     f"species, and observers record the tides, the light and the water there ({j}/{rev}).")
    return "\n\n".join(paras)


def doc_id(d: int) -> str:
    return f"sea/{d}.txt"


def live(d: int, r: int) -> bool:
    """Whether document ``d`` exists in round ``r`` (is published at version ``r``)."""
    return not (DELETED_AT.get(d, math.inf) <= r < RECREATED_AT.get(d, math.inf))


def published(d: int) -> list[int]:
    return [r for r in range(1, ROUNDS + 1) if live(d, r)]


@dataclass(frozen=True)
class Observed:
    """One reply, with when its request was sent and its reply received (monotonic seconds)."""

    reply: SearchReply
    sent: float
    received: float
    fence: str | None = None
    """The doc id of the request's :class:`DocFence`, if any."""


@dataclass
class Run:
    observed: list[Observed]
    gone: dict[str, tuple[float, float]]
    """Doc id -> (from, until): from a fenced reply showing its delete in the view until its next publish."""


def violations(run: Run) -> list[tuple[str, str]]:
    """(kind, detail) of every way the replies disagree with what was published: kind ``mixed``
    (no one version holds the document's hit texts), ``label`` (the reply names another version
    than the one its texts fit) or ``deleted`` (hits of a document whose delete is in the view)."""
    out: list[tuple[str, str]] = []
    for o in run.observed:
        if o.reply.status != "ok":
            out.append(("error", f"{o.reply.request_id}: {o.reply.status} {o.reply.error}"))
            continue
        by_doc: dict[str, list[Hit]] = defaultdict(list)
        for h in o.reply.hits:
            by_doc[h.doc_id].append(h)
        for doc, hits in by_doc.items():
            d = int(doc.split("/")[1].split(".")[0])
            texts = {h.text for h in hits}
            fits = [v for v in published(d) if all(t in content(d, v) for t in texts)]
            labels = sorted({h.version for h in hits})
            if not fits:
                out.append(("mixed", f"{doc}: no version holds all {len(texts)} hit texts (labelled {labels})"))
            elif len(labels) != 1 or labels[0] not in fits:
                out.append(("label", f"{doc}: the reply names versions {labels}, its hit texts fit {fits}"))
            since, until = run.gone.get(doc, (math.inf, math.inf))
            if o.fence == doc or (since <= o.sent and o.received <= until):
                out.append(("deleted", f"{doc}: {len(hits)} hits (labelled {labels}) after its delete was applied"))
    return out


def publish_round(publisher: DocumentPublisher, tenant: str, r: int, gone: dict[str, tuple[float, float]]) -> list[int]:
    """Publish round ``r`` (version ``r`` of every live document, or its delete) and return the
    documents it deletes; a re-created document's time gone ends as it is published again."""
    deleted = [d for d, at in DELETED_AT.items() if at == r]
    for d in range(len(PLACES)):
        if d in deleted:
            publisher.publish(ChangeEvent(doc_id=doc_id(d), op="delete", version=r, tenant=tenant))
        elif live(d, r):
            if RECREATED_AT.get(d) == r:
                gone[doc_id(d)] = (gone[doc_id(d)][0], time.monotonic())
            publisher.publish(ChangeEvent(doc_id=doc_id(d), op="upsert", version=r, content=content(d, r),
                                          content_type="text/plain", tenant=tenant))
    publisher.flush(30)
    return deleted


def run_workload(settings: Settings, tenant: str, search: Search) -> Run:
    """Publish versions 1..ROUNDS (with the deletes and re-creates) while three threads search all
    the time; after each delete, fenced requests wait for it to be applied."""
    publish_and_wait(settings, [ChangeEvent(doc_id=doc_id(d), op="upsert", version=1, content=content(d, 1),
                                            content_type="text/plain", tenant=tenant) for d in range(len(PLACES))])
    observed: list[Observed] = []
    gone: dict[str, tuple[float, float]] = {}
    done = threading.Event()

    def ask(query: str, mode: str, fence: DocFence | None = None) -> None:
        sent = time.monotonic()
        reply = search(query, mode, fence)
        observed.append(Observed(reply, sent, time.monotonic(), fence.doc_id if fence else None))

    def search_until_done(mode: str) -> None:
        i = 0
        while not done.is_set():
            ask(f"field notes on the {PLACES[i % len(PLACES)]}, tides and light", mode)
            i += 1

    searchers = [threading.Thread(target=search_until_done, args=(m,)) for m in MODES]
    for t in searchers:
        t.start()
    publisher = DocumentPublisher(settings.bootstrap_servers, settings.topic_changes)
    try:
        for r in range(2, ROUNDS + 1):
            deleted = publish_round(publisher, tenant, r, gone)
            for d in deleted:  # read-your-delete: these wait in the worker until the delete is applied
                fence = DocFence(doc_id=doc_id(d), tenant=tenant, min_version=r)
                with ThreadPoolExecutor(len(MODES)) as pool:
                    list(pool.map(partial(ask, f"field notes on the {PLACES[d]}", fence=fence), MODES))
                gone[doc_id(d)] = (time.monotonic(), math.inf)
            time.sleep(PAUSE)
    finally:
        publisher.close()
    final = [ChangeEvent(doc_id=doc_id(d), op="upsert", version=ROUNDS, content=content(d, ROUNDS),
                         content_type="text/plain", tenant=tenant) for d in range(len(PLACES)) if live(d, ROUNDS)]
    publish_and_wait(settings, final)  # replays, already applied: the indexer has caught up
    time.sleep(1)
    done.set()
    for t in searchers:
        t.join(timeout=120)
    return Run(observed, gone)


def request(tenant: str, query: str, mode: str, fence: DocFence | None) -> SearchRequest:
    return SearchRequest(request_id=uuid.uuid4().hex, query=query, mode=mode,
                         top_k=40, tenant=tenant, consistency=fence)


def test_replies_show_one_applied_version_and_no_deleted_document(pipeline: Settings) -> None:
    tenant = "admission-on"
    client = SearchClient(pipeline.bootstrap_servers, request_topic=pipeline.topic_requests,
                          reply_topic=pipeline.topic_replies, timeout=60)
    try:
        run = run_workload(pipeline, tenant, lambda q, m, f: client.search(
            q, mode=m, top_k=40, tenant=tenant, consistency=f))
    finally:
        client.close()

    found = violations(run)
    assert not found, f"{len(found)} inconsistent replies, e.g. {found[:3]}"
    hits = [h for o in run.observed for h in o.reply.hits]
    checked = sum(len({h.doc_id for h in o.reply.hits}) for o in run.observed)
    assert len(run.observed) >= 30 and checked >= 60, f"only {len(run.observed)} replies, {checked} document checks"
    seen = {h.version for h in hits}
    assert len(seen) >= 3, f"searches saw versions {sorted(seen)} only; not during the rewrites"
    fenced = [o for o in run.observed if o.fence is not None]
    assert len(fenced) == len(MODES) * len(DELETED_AT)
    in_window = [o for o in run.observed if o.fence is None and any(
        since <= o.sent and o.received <= until for since, until in run.gone.values())]
    assert len(in_window) >= 10, f"only {len(in_window)} replies while a deleted document was gone"
    print(f"admission on: {len(run.observed)} replies, {checked} document checks, versions {sorted(seen)}, "
          f"{len(in_window)} replies while a document was deleted")
    back = [h for h in hits if h.doc_id == doc_id(0) and h.version >= RECREATED_AT[0]]
    assert back, "the re-created document was never found again"


def test_the_checks_fail_when_admission_is_off(pipeline: Settings) -> None:
    """Same workload, same checks, the worker's own Searcher with a view that admits every hit."""
    tenant = "admission-off"
    worker = InProcessWorker(pipeline, AdmitAllView())
    worker.start()
    try:
        run = run_workload(pipeline, tenant, lambda q, m, f: worker.search(request(tenant, q, m, f)))
    finally:
        worker.close()

    found = violations(run)
    kinds = Counter(kind for kind, _ in found)
    print(f"admission off: {len(run.observed)} replies, {len(found)} violations {dict(kinds)}; e.g. {found[:2]}")
    assert found, f"with admission off, {len(run.observed)} replies showed no violation: the checks cannot fail"
