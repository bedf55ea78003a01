"""``freshet bench freshness``: seconds from an edit's event time until a search finds it, edit by
edit, at steady rates of real edits; and the highest rate the machine sustains.

On a pipeline of its own (one indexer and one query worker with the configured settings, on the
running stack's Kafka and Weaviate), the snapshot of an edit history (the first version of each
page) is loaded first. Then, for each rate of a ladder, the next stretch of edits is published at
that steady rate, each stamped with its event time when it is sent. As soon as the indexer has
acknowledged an edit (its applied record; a search cannot find it earlier, since the query worker
learns of a version from those records), a search is sent over the request topic: the document's
chunks (filter ``doc_id``) with a read-your-writes fence on the edit's version, which the query
worker answers once that version is searchable in its view. The edit's figure is the moment the
reply arrives minus its event time, if the reply finds the document at that version or later (no
hit for a delete); otherwise the edit counts as not found.

A rate is sustained when every edit of its stretch is found and they became searchable at no less
than ``--keep-up`` (0.8) of the rate they were published at: the stretch's edits over the time from
its first publish to the moment its last edit was found. Above what the machine sustains the
backlog, and with it that time, grows with the stretch; a few slow edits at the end do not.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from freshet.client import AppliedWatcher, DocumentPublisher, SearchClient
from freshet.errors import FreshetError
from freshet.publishing import publish_events
from freshet.settings import Settings
from ops.bench import SHARED_DATASETS
from ops.bench import langchain_baseline as lc
from ops.bench.load import percentile
from ops.stack import Stack, drop_pipeline, isolated
from schemas.change import ChangeEvent
from schemas.search import SearchReply

DEFAULT_HISTORY = SHARED_DATASETS / "fastapi-docs-edits.jsonl"
RATES = (2.0, 5.0, 10.0, 20.0)


@dataclass
class Step:
    rate_per_s: float
    events: int
    missing: int = 0
    p50_s: float = float("nan")
    p95_s: float = float("nan")
    p99_s: float = float("nan")
    max_s: float = float("nan")
    searchable_per_s: float = float("nan")
    """Edits over the seconds from the first publish to the last edit found."""
    sustained: bool = False


def summarize(step: Step, latencies: Sequence[float | None], keep_up: float) -> Step:
    """Percentiles of the found edits (``latencies`` in publish order, None: not found) and whether
    the rate is sustained."""
    got = [x for x in latencies if x is not None]
    out = replace(step, missing=len(latencies) - len(got))
    if got:
        out.p50_s, out.p95_s = round(percentile(got, 50), 3), round(percentile(got, 95), 3)
        out.p99_s, out.max_s = round(percentile(got, 99), 3), round(max(got), 3)
    if latencies and latencies[-1] is not None:
        # edit i is published at i / rate; the last one is found its latency after its publish
        span = max((i / step.rate_per_s + x for i, x in enumerate(latencies) if x is not None), default=0.0)
        out.searchable_per_s = round(len(latencies) / span, 2) if span > 0 else float("inf")
    out.sustained = out.missing == 0 and out.searchable_per_s >= keep_up * step.rate_per_s
    return out


class Prober:
    """Sends each edit's fenced search once the indexer acknowledged it; records when it is found."""

    def __init__(self, settings: Settings, deadline: float) -> None:
        self._watcher = AppliedWatcher(settings.kafka_access, settings.topic_applied)
        self._client = SearchClient(settings.kafka_access, request_topic=settings.topic_requests,
                                    reply_topic=settings.topic_replies, timeout=deadline)
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[ChangeEvent, float]] = {}
        """Edit number -> (event, event time) not yet acknowledged."""
        self._published: dict[str, dict[int, str]] = {}
        """doc key -> version -> op of every edit published."""
        self._asked = 0
        self.found: dict[int, float] = {}
        """Edit number -> seconds from its event time to the reply that found it."""
        self.failed: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="freshness-prober", daemon=True)
        self._thread.start()

    def expect(self, n: int, ev: ChangeEvent, event_time: float) -> None:
        with self._lock:
            self._waiting[n] = (ev, event_time)
            self._published.setdefault(ev.key, {})[ev.version] = ev.op

    def outstanding(self) -> int:
        with self._lock:
            return len(self._waiting) + self._asked - len(self.found) - len(self.failed)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            with self._lock:
                ready = [(n, ev, t) for n, (ev, t) in self._waiting.items()
                         if self._watcher.count_applied({ev.key: ev.version}) == 1]
                for n, _, _ in ready:
                    del self._waiting[n]
                self._asked += len(ready)
            for n, ev, t in ready:
                self._ask(n, ev, t)

    def _ask(self, n: int, ev: ChangeEvent, event_time: float) -> None:
        fut = self._client.submit("freshness probe", mode="vector", top_k=1, tenant=ev.tenant,
                                  filters={"field": "doc_id", "op": "eq", "value": ev.doc_id},
                                  consistency={"doc_id": ev.doc_id, "tenant": ev.tenant, "min_version": ev.version})

        def done(f: Future[SearchReply]) -> None:
            now = time.time()
            try:
                reply = f.result()
            except Exception as exc:  # noqa: BLE001 - recorded as not found, with why
                outcome: str | None = f"no reply: {exc}"
            else:
                with self._lock:
                    published = dict(self._published.get(ev.key, {}))
                outcome = why_not_found(ev, reply, published)
            with self._lock:
                if outcome is None:
                    self.found[n] = now - event_time
                else:
                    self.failed[n] = outcome

        fut.add_done_callback(done)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._client.close()
        self._watcher.close()


def why_not_found(ev: ChangeEvent, reply: SearchReply, published: Mapping[int, str]) -> str | None:
    """None when ``reply`` finds the edit, else why not. ``published`` holds the op of every version
    of the document published so far: the search may rightly find a later one (hits at a later
    version, or none once a later delete was applied: the indexer skips a version a later one in
    the same batch supersedes)."""
    if reply.status != "ok":
        return f"{reply.status}: {reply.error.message if reply.error else ''}"
    if not reply.hits:
        deleted = any(op == "delete" for v, op in published.items() if v >= ev.version)
        return None if deleted else "no hit"
    stale = [h.version for h in reply.hits if h.doc_id != ev.doc_id or h.version < ev.version]
    if stale:
        return f"hit at version {stale[0]} < {ev.version}"
    return None


def run(base: Settings, history: Path, *, rates: Sequence[float] = RATES, seconds: float = 30.0,
        keep_up: float = 0.8, drain: float = 60.0) -> dict[str, Any]:
    events = [ChangeEvent.model_validate(e) for e in lc.load_events(history)]
    snapshot, edits = events[: lc.SNAPSHOT_EVENTS], events[lc.SNAPSHOT_EVENTS:]
    Stack(base).up(["kafka", "weaviate"])
    steps: list[Step] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="freshet-bench-fresh-") as home:
        settings = isolated(base, f"bench-fresh-{uuid.uuid4().hex[:8]}", Path(home))
        stack = Stack(settings)
        try:
            stack.up(["indexer", "query"])
            publish_events(settings, snapshot, wait=True, timeout=900, desc="freshness: snapshot")
            prober = Prober(settings, deadline=drain)
            publisher = DocumentPublisher(settings.kafka_access, settings.topic_changes)
            at = numbered = 0
            try:
                for rate in rates:
                    stretch = edits[at: at + max(1, int(rate * seconds))]
                    if not stretch:
                        break
                    at += len(stretch)
                    numbers = list(range(numbered, numbered + len(stretch)))
                    numbered += len(stretch)
                    click.echo(f"freshness: {len(stretch)} edits at {rate:g}/s ...", err=True)
                    start = time.monotonic()
                    for i, (n, ev) in enumerate(zip(numbers, stretch, strict=True)):
                        delay = start + i / rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        now = datetime.now(UTC)
                        prober.expect(n, ev, now.timestamp())
                        publisher.publish(ev.model_copy(update={"event_time": now}))
                    publisher.flush()
                    deadline = time.monotonic() + drain
                    while prober.outstanding() and time.monotonic() < deadline:
                        time.sleep(0.1)
                    steps.append(summarize(Step(rate, len(stretch)), [prober.found.get(n) for n in numbers],
                                           keep_up))
                    failures += [f"{rate:g}/s edit {n}: {prober.failed[n]}" for n in numbers if n in prober.failed]
                    if prober.outstanding():
                        break  # a backlog the next rate would only add to
                    time.sleep(2.0)
            finally:
                publisher.close()
                prober.close()
        finally:
            stack.down(["indexer", "query"])
            drop_pipeline(settings)
    sustained = [s.rate_per_s for s in steps if s.sustained]
    load = os.getloadavg()
    return {"history": history.name, "linger_s": base.index_linger_seconds,
            "steps": [asdict(s) for s in steps],
            "max_sustainable_rate_per_s": max(sustained, default=0.0), "not_found": failures[:20],
            "load_average": [round(x, 2) for x in load]}


def headline(result: dict[str, Any], rate: float) -> dict[str, Any]:
    """The figures at ``rate`` (or the nearest rate run below it) for the suite's report."""
    steps = [s for s in result["steps"] if s["rate_per_s"] <= rate] or result["steps"]
    s = max(steps, key=lambda s: s["rate_per_s"]) if steps else {}
    return {"rate_per_s": s.get("rate_per_s"), "p50_s": s.get("p50_s"), "p95_s": s.get("p95_s"),
            "p99_s": s.get("p99_s"), "max_sustainable_rate_per_s": result["max_sustainable_rate_per_s"]}


def report(result: dict[str, Any]) -> str:
    lines = [f"freshet bench freshness ({os.cpu_count()} cores; {result['history']}; "
             f"index linger {result['linger_s']} s; load average "
             f"{' '.join(map(str, result['load_average']))})",
             "| edits/s | edits | found | p50 s | p95 s | p99 s | max s | searchable/s | sustained |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for s in result["steps"]:
        lines.append(f"| {s['rate_per_s']:g} | {s['events']} | {s['events'] - s['missing']} | {s['p50_s']} | "
                     f"{s['p95_s']} | {s['p99_s']} | {s['max_s']} | {s['searchable_per_s']} | "
                     f"{'yes' if s['sustained'] else 'no'} |")
    lines.append(f"highest sustained rate: {result['max_sustainable_rate_per_s']:g} edits/s")
    lines += [f"not found: {why}" for why in result["not_found"]]
    return "\n".join(lines)


def _rates(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"comma-separated rates, got {value!r}") from exc
    if not out or any(r <= 0 for r in out):
        raise click.BadParameter("rates must be positive")
    return out


@click.command("freshness")
@click.argument("history", required=False, default=DEFAULT_HISTORY,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rates", default=",".join(f"{r:g}" for r in RATES), show_default=True, callback=_rates,
              help="Edits per second of each step, in order.")
@click.option("--seconds", default=30.0, show_default=True, type=click.FloatRange(1), help="Length of each step.")
@click.option("--keep-up", default=0.8, show_default=True, type=click.FloatRange(0, 1),
              help="Share of a step's rate its edits must become searchable at for the rate to count as sustained.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_obj
def freshness_command(settings: Settings | None, history: Path, rates: tuple[float, ...], seconds: float,
                      keep_up: float, as_json: bool) -> None:
    """Event time to searchable, edit by edit, at steady rates of real edits (HISTORY: an edit history
    as JSON lines; default the shared FastAPI docs history)."""
    try:
        result = run(settings or Settings(), history, rates=rates, seconds=seconds, keep_up=keep_up)
    except FreshetError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(result) if as_json else report(result))
