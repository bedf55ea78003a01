"""Building the metrics-topic snapshots from the declared metrics and a worker's counters."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from prometheus_client.metrics import MetricWrapperBase

from schemas.metrics import MetricsSnapshot, Percentiles, Quality
from workers import metrics


def _samples(metric: MetricWrapperBase, suffix: str = "") -> list[tuple[dict[str, str], float]]:
    name = metric._name + suffix  # noqa: SLF001 - prometheus_client keeps the base name here
    return [(s.labels, s.value) for family in metric.collect() for s in family.samples if s.name == name]


def _pct(raw: dict[str, float] | None) -> Percentiles | None:
    return None if raw is None else Percentiles(p50=raw["p50"], p90=raw["p90"], p99=raw["p99"], count=int(raw["count"]))


class SnapshotBuilder:
    """One worker's snapshots: counters now, throughput since the previous snapshot."""

    def __init__(self, worker: str, instance: str, counters: Callable[[], dict[str, int]],
                 rates: Sequence[str], quality: Callable[[], Quality | None] | None = None) -> None:
        self._worker = worker
        self._instance = instance
        self._counters = counters
        self._rates = rates
        self._quality = quality
        self._previous: tuple[float, dict[str, int]] | None = None

    def build(self) -> MetricsSnapshot:
        now = time.monotonic()
        counters = self._counters()
        interval = 0.0
        throughput: dict[str, float] = {}
        if self._previous is not None:
            then, before = self._previous
            interval = max(now - then, 1e-9)
            throughput = {f"{name}_per_second": (counters.get(name, 0) - before.get(name, 0)) / interval
                          for name in self._rates}
        self._previous = (now, counters)
        oldest = _samples(metrics.OLDEST_UNAPPLIED_AGE)
        return MetricsSnapshot(
            worker=self._worker, instance=self._instance, at=datetime.now(UTC),
            interval_seconds=round(interval, 3),
            freshness_seconds=_pct(metrics.RECENT_FRESHNESS.percentiles()),
            searchable_freshness_seconds=_pct(metrics.RECENT_SEARCHABLE_FRESHNESS.percentiles()),
            request_seconds=_pct(metrics.RECENT_REQUEST_SECONDS.percentiles()),
            lag_records={labels["partition"]: int(v) for labels, v in _samples(metrics.CONSUMER_LAG)},
            oldest_unapplied_age_seconds=oldest[0][1] if oldest and self._worker == "indexer" else None,
            throughput=throughput,
            dead_lettered={labels["reason"]: int(v) for labels, v in _samples(metrics.DEAD_LETTERED, "_total")
                           if labels["worker"] == self._worker},
            store_faults={labels["kind"]: int(v) for labels, v in _samples(metrics.STORE_ERRORS, "_total")},
            quality=self._quality() if self._quality is not None else None,
            counters=counters,
        )
