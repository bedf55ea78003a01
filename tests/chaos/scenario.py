"""One chaos scenario from start to verdict: its pipeline, its watchers, the stream, the checks.

A test module builds a :class:`Scenario`, streams a workload through :meth:`Scenario.stream` while
its own fault function runs, marks each fault's end with :meth:`Scenario.fault_ended`, and calls
:meth:`Scenario.finish`, which waits for the pipeline to catch up, runs every check and stores the
reliability-table row (also when the test fails half-way: the row then says so).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import structlog

from freshet.client import read_to_end
from freshet.verify import run_verify
from ops.stack import drop_pipeline
from tests.chaos import checks, report
from tests.chaos.observe import AppliedFollower, HealthPoller, Outgoing, Publisher, SearchLoad, log_events, read_backs
from tests.chaos.services import Pipeline, Services, pipeline_settings, start_pipeline
from tests.chaos.workload import Final
from workers.embedding import SentenceTransformerEmbedder
from workers.topology import state_changelog

log = structlog.get_logger(__name__)

#: Log events of the indexer worth quoting in a report (each is also evidence of a failure).
NOTABLE = ("batch_failed_isolating", "event_failed", "old_chunks_not_deleted", "tail_check_failed",
           "event_dead_lettered")


class Scenario:
    def __init__(self, services: Services, root: Path, name: str, report_dir: Path, *, rate: float,
                 search_rate: float = 2.0, search_deadline_s: float = 4.0, **overrides: object) -> None:
        self.services = services
        self.name = name
        self.report_dir = report_dir
        self.settings = pipeline_settings(services, name, root, **overrides)
        self.row = report.Row(name)
        self.rate = rate
        self.search_rate = search_rate
        self.search_deadline_s = search_deadline_s
        self.fault_marks: list[tuple[float, int]] = []  # (wall-clock end of a fault, records published by then)
        self.outgoing: list[Outgoing] = []
        self.started = time.monotonic()
        self.pipeline: Pipeline | None = None

    # --- set-up -----------------------------------------------------------------------------
    def __enter__(self) -> Scenario:
        log.info("chaos_scenario_starting", scenario=self.name, collection=self.settings.collection)
        self.pipeline = start_pipeline(self.settings)
        self.phases: dict[str, float] = {"start": time.monotonic() - self.started}
        self.follower = AppliedFollower(self.settings)
        self.health = HealthPoller(self.settings)
        self.searches = SearchLoad(self.settings, rate=self.search_rate, deadline_s=self.search_deadline_s)
        self.publisher = Publisher(self.settings, self.rate)
        for t in (self.follower, self.health, self.searches):
            t.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for t in (self.searches, self.health, self.follower):
            t.stop()
        if exc is not None:
            self.row.failures.append(f"scenario aborted: {kind.__name__ if kind else ''}: {str(exc)[:500]}")
            log.error("chaos_scenario_aborted", scenario=self.name,
                      error="".join(traceback.format_exception(exc))[-3000:])
        self.row.wall_seconds = time.monotonic() - self.started
        if self.pipeline is not None:
            self.row.read_backs = read_backs(self.pipeline.log("indexer"))
            self.pipeline.stack.down(["indexer", "query"])
        report.save(self.row, self.report_dir)
        if self.row.failures:
            self.keep_evidence()
        try:
            drop_pipeline(self.settings)
        except Exception as exc2:  # noqa: BLE001 - e.g. the store is down after a failed scenario
            log.warning("chaos_drop_failed", error=str(exc2))

    def keep_evidence(self) -> None:
        """Before a failed scenario's topics are dropped, copy them (changes, applied, state changelog,
        dead letters) to ``<report dir>/evidence/<scenario>/<topic>.jsonl``, one record a line."""
        out = self.report_dir / "evidence" / self.name
        out.mkdir(parents=True, exist_ok=True)
        s = self.settings
        for topic in (s.topic_changes, s.topic_applied, state_changelog(s.consumer_group_prefix), s.topic_dead_letter):
            try:
                records = read_to_end(s.bootstrap_servers, topic)
            except Exception as exc:  # noqa: BLE001 - evidence is best effort; the failure is already recorded
                log.warning("chaos_evidence_unread", topic=topic, error=str(exc))
                continue
            with (out / f"{topic}.jsonl").open("w") as f:
                for r in records:
                    f.write(json.dumps({
                        "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
                        "key": r.key.decode("utf-8", "replace") if r.key is not None else None,
                        "value": r.value.decode("utf-8", "replace") if r.value is not None else None,
                        "headers": {k: (v or b"").decode("utf-8", "replace") for k, v in (r.headers or [])},
                    }) + "\n")
        log.warning("chaos_evidence_kept", scenario=self.name, directory=str(out))

    # --- the stream -------------------------------------------------------------------------
    def stream(self, items: Sequence[Outgoing], fault: Callable[[Scenario], None]) -> None:
        """Publish ``items`` at the scenario's rate in the background while ``fault(self)`` runs."""
        self.outgoing = list(items)
        halt = threading.Event()
        pub = threading.Thread(target=self.publisher.publish, args=(self.outgoing, halt), daemon=True,
                               name="chaos-publish")
        pub.start()
        t0 = time.monotonic()
        try:
            fault(self)
        finally:
            pub.join()
            self.phases["stream+faults"] = time.monotonic() - t0

    def fault_ended(self) -> None:
        """The current fault is over: recovery is measured from now, for what was published by now."""
        self.fault_marks.append((time.time(), self.publisher.sent))
        log.info("chaos_fault_ended", scenario=self.name, published=self.publisher.sent)

    def wait_published(self, share: float) -> None:
        """Block until ``share`` of the stream is published (to place a fault mid-stream)."""
        want = int(len(self.outgoing) * share)
        while self.publisher.sent < want:
            time.sleep(0.1)

    # --- the verdict ------------------------------------------------------------------------
    def finish(self, final: dict[str, Final], embedder: SentenceTransformerEmbedder, *, good: Sequence[int],
               timeout: float = 600.0, only: set[str] | None = None, vectors: bool = True) -> None:
        """Wait until applied, then every check; failures go to the row (asserted by the caller).

        ``good``: indexes into the stream of the workload's records (for the dead-letter check).
        """
        row, topic = self.row, self.settings.topic_changes
        if self.publisher.failures:
            row.failures.append(f"publisher: {len(self.publisher.failures)} sends failed: "
                                f"{self.publisher.failures[:3]}")
        needed = self.publisher.needed(len(self.outgoing), self.outgoing, topic)
        t0 = time.monotonic()
        missing = checks.wait_applied(self.follower, final, needed, timeout)
        self.phases["catch-up"] = time.monotonic() - t0
        if missing:
            row.failures.append(f"{len(missing)} documents not applied as expected after {timeout:.0f}s, e.g. "
                                f"{missing[:5]}")
        for at, sent in self.fault_marks:
            done = self.follower.handled_at(self.publisher.needed(sent, self.outgoing, topic), at)
            if done is None:
                row.notes.append(f"fault ending at {time.strftime('%H:%M:%S', time.gmtime(at))}Z: never recovered")
            else:
                row.recover_seconds.append(round(done - at, 1))
        t0 = time.monotonic()
        fig = checks.settle_index(self.settings, final, embedder, timeout=60, only=only)
        row.lost, row.stale, row.duplicated = fig.lost, fig.stale, fig.duplicated
        if not fig.clean:
            row.failures.append(f"index differs from a clean load: {fig.lost} lost, {fig.stale} stale, "
                                f"{fig.duplicated} duplicated; e.g. {fig.examples[:5]}")
        problems = run_verify(self.settings, vectors=vectors)
        if problems:
            row.failures.append(f"freshet verify{' --vectors' if vectors else ''}: {len(problems)} problems, e.g. "
                                f"{problems[:5]}")
        good_positions = {self.publisher.positions[i] for i in good if i < len(self.publisher.positions)}
        letters = checks.dead_letters(self.settings)
        bad = checks.good_dead_lettered(letters, topic, good_positions)
        if bad:
            reasons = sorted({f"{d.reason}: {d.error[:160]}" for d in bad})
            row.failures.append(f"{len(bad)} good events dead-lettered: {reasons[:5]}")
        self.letters = letters
        self.phases["checks"] = time.monotonic() - t0
        row.notes.append("phases (s): " + ", ".join(f"{k} {v:.0f}" for k, v in self.phases.items()))
        assert self.pipeline is not None
        notable = log_events(self.pipeline.log("indexer"), *NOTABLE)
        if notable:
            kinds: dict[str, int] = {}
            for rec in notable:
                kinds[str(rec.get("event"))] = kinds.get(str(rec.get("event")), 0) + 1
            row.notes.append(f"indexer log: {kinds}; first: {_brief(notable[0])}")
        self.searches.stop()  # the last replies are in (it waits for them): the outcomes are final
        row.notes.append(f"searches: {_outcomes(self.searches)}")

    def fail(self, message: str) -> None:
        self.row.failures.append(message)


def _brief(rec: dict[str, object]) -> str:
    keep = {k: rec[k] for k in ("event", "reason", "error", "exception", "what", "doc_id") if k in rec}
    text = str(keep)
    return text[:600]


def _outcomes(load: SearchLoad) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in load.searches:
        key = s.status if s.code is None else f"{s.status}:{s.code}"
        out[key] = out.get(key, 0) + 1
    return out
