"""Quality probes of the live index, run by the query worker on a schedule.

- **Searchability**: chunks the indexer applied recently are searched for by their own stored
  vector (vector mode, top 10, through the same admission as every reply: the embedding of their
  own text, without running the model again); the share found is reported, and for
  each chunk found the seconds from its change's event time (``freshet_searchable_freshness_seconds``):
  freshness as a searcher sees it, not only as the write acknowledgement says.
- **Golden set** (:func:`golden_figures`): a BEIR-layout set judged against the indexed documents,
  searched over the request path (Kafka round trip included), nDCG@10 and Recall@10 per mode.
- **ANN recall**: for sampled stored chunks, the HNSW top 10 against the exact top 10 by brute
  force over every stored vector (only while the collection holds at most ``ann_max_chunks``).
  With multi-tenancy each tenant's shard has its own HNSW index: one tenant, drawn at random among
  those with live documents, is measured per run.

Probes search only the shards of tenants this worker serves (``Searcher.tenancy``).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import structlog

from freshet.client import SearchClient
from schemas.applied import AppliedRecord
from schemas.search import SearchRequest
from workers import metrics
from workers.beir import Dataset
from workers.relevance import PROBE_METRICS, evaluate, rank_documents
from workers.search import Searcher
from workers.store import StoreQuery

log = structlog.get_logger(__name__)


@dataclass
class _Pending:
    record: AppliedRecord
    chunk_id: str
    first_tried: float


class Probes:
    """The searchability and ANN-recall probes; results go to the gauges and ``searcher.probes``."""

    def __init__(self, searcher: Searcher, *, give_up_seconds: float = 60.0,
                 ann_samples: int = 20, ann_max_chunks: int = 50_000) -> None:
        """Probes of what ``searcher`` serves (the generation it serves at each probe)."""
        self._searcher = searcher
        self._give_up = give_up_seconds
        self._ann_samples = ann_samples
        self._ann_max = ann_max_chunks
        self._pending: dict[str, _Pending] = {}
        self._outcomes: deque[bool] = deque(maxlen=200)

    async def searchability(self, sample: int = 5) -> None:
        """Pick up to ``sample`` newly applied chunks, then try every pending one once."""
        view = self._searcher.view
        while view.recent and len(self._pending) < 50:
            record, new_ids = view.recent.pop()
            cid = min(new_ids)
            self._pending.setdefault(cid, _Pending(record, cid, time.time()))
            sample -= 1
            if sample <= 0:
                break
        view.recent.clear()  # older ones are superseded by the sample just taken
        for cid, p in list(self._pending.items()):
            found = await self._found(p) if self._searcher.tenancy.serves(p.record.tenant) else None
            if found is None or found or time.time() - p.first_tried > self._give_up:
                del self._pending[cid]
                if found is not None:
                    self._record(bool(found), p)

    async def _found(self, p: _Pending) -> bool | None:
        """True/False, or None when the chunk is gone (superseded by a later version)."""
        objects = await self._searcher.store.fetch([p.chunk_id], tenant=p.record.tenant, with_vectors=True)
        if not objects or not objects[0].vector:
            return None
        text = str(objects[0].properties.get("text", ""))[:4000] or p.chunk_id
        reply = await self._searcher.search(SearchRequest(request_id=f"probe-{uuid.uuid4().hex}", query=text,
                                                          mode="vector", top_k=10, tenant=p.record.tenant),
                                            vector=list(objects[0].vector))
        return any(h.chunk_id == p.chunk_id for h in reply.hits)

    def _record(self, found: bool, p: _Pending) -> None:
        self._outcomes.append(found)
        if found and p.record.event_time is not None:
            age = max(0.0, time.time() - p.record.event_time.timestamp())
            metrics.SEARCHABLE_FRESHNESS.observe(age)
            metrics.RECENT_SEARCHABLE_FRESHNESS.add(age)
        share = sum(self._outcomes) / len(self._outcomes)
        metrics.SEARCHABLE_SHARE.set(share)
        self._searcher.probes = self._searcher.probes.model_copy(update={"searchability_share": round(share, 4)})

    async def ann_recall(self) -> float | None:
        """Recall@10 of HNSW against brute force for sampled stored chunks (None if too many or too few)."""
        tenancy, tenant = self._searcher.tenancy, None
        if tenancy.required:  # one tenant's shard, one HNSW index
            served = sorted(t for t in self._searcher.view.tenants() if t is not None and tenancy.serves(t))
            if not served:
                return None
            tenant = random.choice(served)
        store = self._searcher.store  # one generation for the whole probe
        vectors = await store.vectors(self._ann_max, tenant=tenant)
        if not vectors or len(vectors) < 20:
            return None
        ids = list(vectors)
        matrix = np.asarray([vectors[i] for i in ids], dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-12
        recalls = []
        for qi in random.Random(len(ids)).sample(range(len(ids)), min(self._ann_samples, len(ids))):
            exact = {ids[j] for j in np.argsort(-(matrix @ matrix[qi]))[:10]}
            hits = await store.search(StoreQuery(mode="vector", text="", vector=matrix[qi].tolist(), limit=10,
                                                 tenant=tenant))
            recalls.append(len(exact & {h.id for h in hits}) / 10)
        recall = float(np.mean(recalls))
        metrics.ANN_RECALL.set(recall)
        self._searcher.probes = self._searcher.probes.model_copy(update={"ann_recall_at_10": round(recall, 4)})
        return recall


def golden_figures(client: SearchClient, dataset: Dataset, modes: Sequence[str],
                   timeout: float = 30.0) -> dict[str, dict[str, float]]:
    """nDCG@10 and Recall@10 of ``dataset``'s judged queries, searched over the request path
    (blocking: run it in a thread). Documents are ranked by their best chunk."""
    out: dict[str, dict[str, float]] = {}
    for mode in modes:
        futures = {qid: client.submit(text, mode=mode, top_k=50, timeout=timeout)
                   for qid, text in dataset.queries.items()}
        rankings = {qid: rank_documents((h.doc_id, h.score) for h in fut.result(timeout + 5).hits)
                    for qid, fut in futures.items()}
        out[mode] = evaluate(dataset.qrels, rankings, PROBE_METRICS)
    return out
