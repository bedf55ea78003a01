"""The metrics snapshot: what each worker publishes on the metrics topic every few seconds, so that
consumers without Prometheus (and the built-in dashboard) can follow freshness and quality.

Key: the worker instance. Percentiles are over the last five minutes of samples; throughput is
per second over the snapshot's interval; counters are cumulative since the worker started.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class Percentiles(BaseModel):
    p50: float
    p90: float
    p99: float
    count: int = Field(description="Samples in the window.")


class Quality(BaseModel):
    """The latest figures of the query worker's probes (absent until a probe has run)."""

    golden_ndcg_at_10: dict[str, float] = Field(default_factory=dict, description="By search mode.")
    golden_recall_at_10: dict[str, float] = Field(default_factory=dict, description="By search mode.")
    golden_measured_at: datetime | None = None
    ann_recall_at_10: float | None = None
    searchability_share: float | None = None
    index_documents: int | None = None
    index_chunks: int | None = None


class MetricsSnapshot(BaseModel):
    """One worker's state at ``at``."""

    kind: Literal["snapshot"] = "snapshot"
    worker: Literal["indexer", "query"]
    instance: str
    at: datetime
    interval_seconds: float
    freshness_seconds: Percentiles | None = Field(None, description="Event time -> write acknowledged.")
    searchable_freshness_seconds: Percentiles | None = Field(None, description="Event time -> found by the probe.")
    request_seconds: Percentiles | None = None
    lag_records: dict[str, int] = Field(default_factory=dict, description="By changes partition.")
    oldest_unapplied_age_seconds: float | None = None
    throughput: dict[str, float] = Field(default_factory=dict, description="Per second over the interval.")
    dead_lettered: dict[str, int] = Field(default_factory=dict, description="Cumulative, by reason.")
    store_faults: dict[str, int] = Field(
        default_factory=dict, description="Failed Weaviate calls, cumulative, by kind (readonly, memory, unavailable, "
                                          "server_error, schema_mismatch: waited out; rejected: dead-lettered).")
    quality: Quality | None = None
    counters: dict[str, int] = Field(default_factory=dict)
