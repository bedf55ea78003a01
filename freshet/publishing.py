"""Publishing change events from files, waiting for them, and printing search replies."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import click
import httpx
from pydantic import ValidationError
from tqdm import tqdm

from freshet.client import AppliedWatcher, DocumentPublisher, wanted_versions
from freshet.errors import FreshetError, TransientError
from freshet.settings import Settings
from schemas.change import ChangeEvent
from schemas.search import SearchReply


def load_events(path: Path) -> list[ChangeEvent]:
    """Read change events from a JSON-lines file; fail on the first bad line, naming it."""
    events = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                events.append(ChangeEvent.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise FreshetError(f"{path}:{n}: not a valid change event: {exc}") from exc
    return events


def publish_events(settings: Settings, events: Sequence[ChangeEvent], *, wait: bool, timeout: float,
                   desc: str = "publishing") -> None:
    """Publish ``events`` in order with a progress bar; with ``wait``, block until all are applied."""
    watcher = AppliedWatcher(settings.kafka_access, settings.topic_applied) if wait else None
    publisher = DocumentPublisher(settings.kafka_access, settings.topic_changes)
    try:
        futures = [publisher.publish(ev) for ev in tqdm(events, desc=desc, unit="event")]
        publisher.flush()
        for fut in futures:
            fut.result(timeout=60)
        if watcher is not None:
            wait_applied(watcher, wanted_versions(events), timeout)
    finally:
        publisher.close()
        if watcher is not None:
            watcher.close()


def wait_applied(watcher: AppliedWatcher, wanted: dict[str, int], timeout: float) -> None:
    """Show a progress bar of applied documents until all of ``wanted`` are applied."""
    deadline = time.monotonic() + timeout
    with tqdm(total=len(wanted), desc="indexing", unit="doc") as bar:
        while True:
            done = watcher.count_applied(wanted)
            bar.update(done - bar.n)
            if done == len(wanted):
                return
            if time.monotonic() > deadline:
                raise TransientError(
                    f"{len(wanted) - done} of {len(wanted)} documents not applied after {timeout:.0f}s; "
                    "is the indexer running (make status)? See .freshet/logs/indexer.log")
            watcher.wait(wanted, timeout=0.5)


def indexer_stats(settings: Settings) -> dict[str, int]:
    """The running indexers' cumulative counters (``/stats`` of their HTTP servers), added up over
    every indexer of a local cluster."""
    totals: dict[str, int] = {}
    for base in _indexer_urls(settings):
        url = f"{base}/stats"
        try:
            stats = httpx.get(url, timeout=10).raise_for_status().json()
        except httpx.HTTPError as exc:
            raise FreshetError(f"cannot read {url}: {exc}; is the indexer running (make status)?") from exc
        for name, value in stats.items():
            if isinstance(value, int | float):
                totals[name] = totals.get(name, 0) + int(value)
    return totals


def _indexer_urls(settings: Settings) -> list[str]:
    """The indexer named by FRESHET_INDEXER_URL, else every indexer of the local stack's layout."""
    if not settings.indexer_url:
        from ops.cluster import load

        layout = load(settings.home)
        ports = [w.web_port for w in layout.workers if w.role == "indexer"] if layout else []
        if len(ports) > 1:
            return [f"http://127.0.0.1:{port}" for port in ports]
    return [settings.indexer_base_url]


def print_reply(query: str, reply: SearchReply) -> None:
    t = reply.timings
    click.secho(f"\n{query!r}: {reply.status}, {len(reply.hits)} hits "
                f"(embed {t.embed_ms:.0f} ms, search {t.search_ms:.0f} ms"
                + (f", generation {reply.generation})" if reply.generation else ")"), bold=True)
    if reply.error:
        click.secho(f"  {reply.error.code}: {reply.error.message}", fg="red")
    for i, hit in enumerate(reply.hits, 1):
        where = " > ".join(hit.heading_path) or (hit.title or "")
        snippet = " ".join(hit.text.split())[:160]
        click.echo(f"  {i:>2}. {hit.score:.3f}  {hit.doc_id} v{hit.version}  [{where}]")
        click.echo(f"      {snippet}")
