"""Every Prometheus metric of freshet, declared once (units in the names, small fixed label sets).

Each worker serves the ones it updates at ``/metrics``. Freshness is measured twice: at the write
acknowledgement (``freshet_freshness_seconds``: event time -> Weaviate acknowledged the writes) and
by the searchability probe (``freshet_searchable_freshness_seconds``: event time -> a search over
the live index finds the new chunk), which also covers the time until the index serves it.
"""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import Counter, Gauge, Histogram

_FRESHNESS_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# --- Freshness (indexer) ---------------------------------------------------------------------
FRESHNESS = Histogram("freshet_freshness_seconds", "Seconds from a change's event time to the write "
                      "acknowledgement of everything it caused.", buckets=_FRESHNESS_BUCKETS)
SEARCHABLE_FRESHNESS = Histogram("freshet_searchable_freshness_seconds", "Seconds from a change's event time "
                                 "until the searchability probe found its new chunk.", buckets=_FRESHNESS_BUCKETS)
OLDEST_UNAPPLIED_AGE = Gauge("freshet_oldest_unapplied_age_seconds",
                             "Age of the oldest change event not yet applied (0 when caught up).")
CONSUMER_LAG = Gauge("freshet_consumer_lag_records", "Records of the changes topic not yet handled.", ["partition"])

# --- Indexer work ----------------------------------------------------------------------------
EVENTS_APPLIED = Counter("freshet_events_applied_total", "Change events whose effect is in the index.")
STALE_SKIPPED = Counter("freshet_stale_skipped_total", "Change events skipped: version not above the applied one.")
DEAD_LETTERED = Counter("freshet_dead_lettered_total", "Records sent to the dead-letter topic.", ["worker", "reason"])
CHUNKS_EMBEDDED = Counter("freshet_chunks_embedded_total", "Chunks sent to the embedding model.")
CHUNKS_REUSED = Counter("freshet_chunks_reused_total", "Chunks kept as they were or taken from the embedding cache.")
CHUNKS_DELETED = Counter("freshet_chunks_deleted_total", "Chunks deleted from Weaviate.")
KAFKA_REFUSED = Counter("freshet_kafka_records_refused_total", "Records Kafka refused for good (too large for the "
                        "topic); a state write then waits until the topic takes it.", ["what"])
READ_BACK = Counter("freshet_read_back_total", "Records the consumer skipped that the delivery guard read back.")
EMBED_BATCH_SIZE = Histogram("freshet_embedding_batch_size", "Texts per call of the embedding model.",
                             buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
EMBED_SECONDS = Histogram("freshet_embedding_seconds", "Seconds per call of the embedding model.",
                          buckets=_LATENCY_BUCKETS)
STORE_WRITE_SECONDS = Histogram("freshet_weaviate_write_seconds", "Seconds per Weaviate write call.", ["op"],
                                buckets=_LATENCY_BUCKETS)
#: The fixed ``kind`` labels of :data:`STORE_ERRORS` (see :mod:`workers.weaviate_faults`): ``rejected`` is
#: the objects' fault (their events are dead-lettered); every other kind is waited out with backoff.
STORE_ERROR_KINDS = ("rejected", "schema_mismatch", "readonly", "memory", "unavailable", "server_error")
STORE_ERRORS = Counter("freshet_weaviate_errors_total", "Failed Weaviate calls by kind: rejected (an event's metadata "
                       "invalid: dead-lettered) or schema_mismatch/readonly/memory/unavailable/server_error (retried).",
                       ["kind"])
for _kind in STORE_ERROR_KINDS:  # every series exists from the start, so rate() and alerts see a 0 before a fault
    STORE_ERRORS.labels(_kind)

# --- Queries ---------------------------------------------------------------------------------
REQUESTS = Counter("freshet_search_requests_total", "Search requests answered, by mode and status.",
                   ["mode", "status"])
REQUEST_SECONDS = Histogram("freshet_search_latency_seconds", "Seconds from reading a request to its reply.",
                            ["mode"], buckets=_LATENCY_BUCKETS)
ZERO_HITS = Counter("freshet_search_zero_hit_replies_total", "ok replies without a hit.", ["mode"])
EXPIRED_DROPPED = Counter("freshet_search_expired_dropped_total", "Requests read after their deadline, unanswered.")

# --- Quality (probes of the query worker) ----------------------------------------------------
GOLDEN_NDCG = Gauge("freshet_golden_ndcg_at_10", "nDCG@10 of the golden set over the request path.", ["mode"])
GOLDEN_RECALL = Gauge("freshet_golden_recall_at_10", "Recall@10 of the golden set over the request path.", ["mode"])
ANN_RECALL = Gauge("freshet_ann_recall_at_10", "Share of the exact top-10 chunks the HNSW index returns.")
SEARCHABLE_SHARE = Gauge("freshet_searchability_share", "Share of recently applied chunks found by their own text.")
INDEX_DOCUMENTS = Gauge("freshet_index_documents", "Documents in the applied view.")
INDEX_CHUNKS = Gauge("freshet_index_chunks", "Chunks in the applied view.")
SERVING_GENERATION = Gauge("freshet_serving_generation", "1 for the index generation this query worker answers "
                           "from ('first' before any freshet reindex).", ["generation", "collection"])
GENERATION_SWITCHES = Counter("freshet_generation_switches_total", "Switches of this query worker to a new "
                              "index generation (freshet reindex).")


class Recent:
    """The samples of the last ``window`` seconds, for the percentiles of the metrics-topic snapshots
    (a Prometheus histogram only keeps bucket counts)."""

    def __init__(self, window: float = 300.0, cap: int = 20_000) -> None:
        self._window = window
        self._samples: deque[tuple[float, float]] = deque(maxlen=cap)

    def add(self, value: float, now: float | None = None) -> None:
        self._samples.append((time.time() if now is None else now, value))

    def percentiles(self, now: float | None = None) -> dict[str, float] | None:
        """p50, p90, p99 and the count of the window's samples; None when there are none."""
        cutoff = (time.time() if now is None else now) - self._window
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.popleft()
        values = sorted(v for _, v in self._samples)
        if not values:
            return None
        def pick(q: float) -> float:  # nearest rank
            return values[min(len(values) - 1, int(q * len(values)))]

        return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "count": float(len(values))}


#: Recent samples behind the snapshots, fed next to the histograms above.
RECENT_FRESHNESS = Recent()
RECENT_SEARCHABLE_FRESHNESS = Recent()
RECENT_REQUEST_SECONDS = Recent()
