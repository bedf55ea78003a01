"""``make demo``: index this project's own documentation through Kafka, then search it over Kafka.

Uses only what the repository holds (README.md and docs/), never ``../shared``.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from freshet.client import SearchClient
from freshet.errors import FreshetError
from freshet.publishing import indexer_stats, print_reply, publish_events
from freshet.settings import Settings
from schemas.change import ChangeEvent
from workers.generation import adopt, read_generations

ROOT = Path(__file__).resolve().parents[1]

QUERIES = [
    ("How do I start the local Kafka and Weaviate stack?", "hybrid"),
    ("where do rejected events with a bad schema go", "vector"),
    ("tombstone null value deletes the document", "keyword"),
]


def project_documents(root: Path = ROOT) -> list[Path]:
    """The README and every Markdown file under docs/."""
    docs = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    return [p for p in docs if p.is_file()]


def run_demo(settings: Settings) -> None:
    paths = project_documents()
    if not paths:
        raise FreshetError(f"no README.md or docs/*.md under {ROOT} to index")
    # A fresh, increasing version per run: each demo run is a new version of every page.
    version = int(time.time() * 1000)
    events = [
        ChangeEvent(doc_id=str(p.relative_to(ROOT)), op="upsert", version=version,
                    content=p.read_text(encoding="utf-8"), metadata={"source": "freshet-docs"})
        for p in paths
    ]
    active, _ = read_generations(settings)  # after a freshet reindex, the workers serve its collection
    click.secho(f"Indexing {len(events)} documents of this repository through Kafka "
                f"({settings.topic_changes} -> indexer -> Weaviate {adopt(settings, 'indexer', active).collection})",
                bold=True)
    started = time.monotonic()
    publish_events(settings, events, wait=True, timeout=300, desc="publishing docs")
    click.echo(f"indexed in {time.monotonic() - started:.1f}s")

    click.secho(f"\nSearching over Kafka ({settings.topic_requests} -> query worker -> "
                f"{settings.topic_replies})", bold=True)
    client = SearchClient(settings.kafka_access, request_topic=settings.topic_requests,
                          reply_topic=settings.topic_replies, timeout=60)
    try:
        for query, mode in QUERIES:
            print_reply(f"{query} [{mode}]", client.search(query, mode=mode, top_k=3))
        _edit_and_search_again(settings, events[-1], client)
    finally:
        client.close()


EDIT = ("## Backing up the local stack\n\nTo back up a local freshet, stop it with `make down` and copy the "
        "whole `.freshet` directory; the Kafka log, the Weaviate data and the worker state "
        "travel together, so a copy restores a consistent index.")


def _edit_and_search_again(settings: Settings, original: ChangeEvent, client: SearchClient) -> None:
    """Edit one indexed document, re-publish it, and show only the new part was embedded."""
    edited = original.model_copy(update={"version": original.version + 1,
                                         "content": (original.content or "").rstrip() + "\n\n" + EDIT + "\n"})
    click.secho(f"\nEditing {edited.doc_id}: one section appended, version {edited.version}", bold=True)
    before = indexer_stats(settings)
    publish_events(settings, [edited], wait=True, timeout=120, desc="publishing the edit")
    after = indexer_stats(settings)
    d = {k: after[k] - before.get(k, 0) for k in after}
    click.echo(f"re-embedded {d['chunks_embedded']} chunk(s), {d['chars_embedded']:,} characters "
               f"({d['tokens_embedded']:,} tokens) of a {len(edited.content or ''):,}-character document; "
               f"{d['chunks_reused']} chunk(s) kept as they were, {d['chunks_deleted']} deleted")
    query = "how do I back up the local stack"
    print_reply(f"{query} [hybrid]", client.search(query, mode="hybrid", top_k=2))
    click.secho("\nWatch it live", bold=True)
    click.echo(f"dashboard: {settings.worker_url('query', '/dashboard')}  (freshness, backlog, throughput, "
               "dead letters, query latency, quality probes)")
    click.echo(f"metrics:   {settings.worker_url('indexer', '/metrics')}  {settings.worker_url('query', '/metrics')}")
