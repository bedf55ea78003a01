"""One cluster scenario: :class:`tests.chaos.scenario.Scenario` on the tier's own cluster.

Everything the single-node tier does is reused (the stream, the watchers, :meth:`Scenario.finish`
with every check and ``freshet verify --vectors``, the report row); what differs is the pipeline:
2 indexers and 2 query workers started by the launcher on the cluster (:func:`nodes.worker_stack`),
a third indexer on demand, and figures summed over every worker's log (read-backs, rebalances,
fenced batches).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import structlog

from ops.stack import Stack
from tests.chaos import report
from tests.chaos.cluster.nodes import ClusterNodes, worker_stack
from tests.chaos.cluster.rebalances import rebalances
from tests.chaos.observe import AppliedFollower, HealthPoller, Publisher, SearchLoad, log_events, read_backs
from tests.chaos.scenario import NOTABLE, Scenario
from tests.chaos.services import Pipeline, Services

log = structlog.get_logger(__name__)


class ClusterScenario(Scenario):
    """A :class:`Scenario` whose pipeline is the cluster's workers (``indexer``, ``indexer-2``, ...)."""

    def __init__(self, nodes: ClusterNodes, root: Path, name: str, report_dir: Path, *, rate: float,
                 **kwargs: Any) -> None:
        super().__init__(Services(nodes.settings, nodes.stack), root, name, report_dir, rate=rate, **kwargs)
        self.nodes = nodes
        self.stream_since = 0.0
        """Wall clock when the stream started (rebalances are counted from then)."""

    def workers(self, indexers: int = 2) -> Stack:
        """The launcher of this scenario's workers with ``indexers`` indexers (3: one joins)."""
        return worker_stack(self.nodes, self.settings, indexers=indexers)

    def __enter__(self) -> ClusterScenario:
        log.info("chaos_cluster_scenario_starting", scenario=self.name, collection=self.settings.collection)
        stack = self.workers()
        try:
            stack.up(["indexer", "query"])
        except BaseException:
            stack.down(["indexer", "query"])  # nothing of a failed start may outlive it
            raise
        self.pipeline = Pipeline(self.settings, stack)
        self.phases = {"start": time.monotonic() - self.started}
        self.follower = AppliedFollower(self.settings)
        self.health = HealthPoller(self.settings)
        self.searches = SearchLoad(self.settings, rate=self.search_rate, deadline_s=self.search_deadline_s)
        self.publisher = Publisher(self.settings, self.rate)
        for t in (self.follower, self.health, self.searches):
            t.start()
        self.stream_since = time.time()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        logs = self.indexer_logs()
        super().__exit__(kind, exc, tb)  # stops every worker (indexer-3 too), saves the row, drops the pipeline
        self.row.read_backs = sum(read_backs(p) for p in logs)
        if len(logs) > 1:
            self.row.notes.append("read-backs per indexer: " + ", ".join(f"{p.stem} {read_backs(p)}" for p in logs))
        report.save(self.row, self.report_dir)

    # --- what the workers' logs and pages say -------------------------------------------------
    def indexer_logs(self) -> list[Path]:
        return sorted((self.settings.home / "logs").glob("indexer*.log"))

    def note_logs(self) -> None:
        """Rebalances since the stream started, fenced batches, and notable events of every indexer
        but the first (:meth:`Scenario.finish` quotes the first's)."""
        logs = self.indexer_logs()
        until = self.publisher.sent_at[-1] if self.publisher.sent_at else None
        self.row.notes.append(f"indexer group: {rebalances(logs, self.stream_since, until).text()}")
        fenced = {p.stem: len(log_events(p, "batch_fenced")) for p in logs}
        self.row.notes.append(f"batches dropped by the fence (batch_fenced): {fenced}")
        for p in logs[1:]:
            notable = log_events(p, *NOTABLE)
            if notable:
                kinds: dict[str, int] = {}
                for rec in notable:
                    kinds[str(rec.get("event"))] = kinds.get(str(rec.get("event")), 0) + 1
                self.row.notes.append(f"{p.stem} log: {kinds}")

    def worker_stats(self, role: str) -> dict[str, dict[str, Any]]:
        """Each running worker of ``role``'s ``/stats`` (by instance name)."""
        assert self.pipeline is not None
        out: dict[str, dict[str, Any]] = {}
        for w in self.pipeline.stack.layout.workers:
            if w.role == role:
                try:
                    out[w.name] = httpx.get(f"http://127.0.0.1:{w.web_port}/stats", timeout=10).json()
                except (httpx.HTTPError, ValueError) as exc:
                    out[w.name] = {"unreachable": f"{type(exc).__name__}: {exc}"}
        return out

    def under_load(self) -> bool:
        """Whether the stream is still being published (a fault now hits a loaded pipeline)."""
        return self.publisher.sent < len(self.outgoing)
