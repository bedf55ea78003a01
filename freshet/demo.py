"""``make demo``: index this project's own documentation through Kafka, then search it over Kafka.

Uses only what the repository holds (README.md and docs/), never ``../shared``.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from freshet.client import SearchClient
from freshet.errors import FreshetError
from freshet.publishing import print_reply, publish_events
from freshet.settings import Settings
from schemas.change import ChangeEvent

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
    click.secho(f"Indexing {len(events)} documents of this repository through Kafka "
                f"({settings.topic_changes} -> indexer -> Weaviate {settings.collection})", bold=True)
    started = time.monotonic()
    publish_events(settings, events, wait=True, timeout=300, desc="publishing docs")
    click.echo(f"indexed in {time.monotonic() - started:.1f}s")

    click.secho(f"\nSearching over Kafka ({settings.topic_requests} -> query worker -> "
                f"{settings.topic_replies})", bold=True)
    client = SearchClient(settings.bootstrap_servers, request_topic=settings.topic_requests,
                          reply_topic=settings.topic_replies, timeout=60)
    try:
        for query, mode in QUERIES:
            print_reply(f"{query} [{mode}]", client.search(query, mode=mode, top_k=3))
    finally:
        client.close()
