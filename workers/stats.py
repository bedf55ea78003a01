"""Cumulative counters of the workers (since each started), served at ``/stats``."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class IndexerStats:
    events_applied: int = 0
    """Change events whose effect is in the index (superseded events of a batch included)."""
    stale_skipped: int = 0
    """Events whose version was not above the applied one."""
    chunks_embedded: int = 0
    """Chunks sent to the model."""
    chars_embedded: int = 0
    """Characters sent to the model (heading context included)."""
    tokens_embedded: int = 0
    """Tokens sent to the model, as its tokenizer counts them."""
    chunks_reused: int = 0
    """New chunk ids whose vector came from the embedding cache, plus chunks left untouched."""
    chunks_written: int = 0
    """Objects inserted into Weaviate."""
    chunks_updated: int = 0
    """Objects whose properties alone were updated (title or metadata changes)."""
    chunks_deleted: int = 0
    """Objects deleted from Weaviate."""
    dead_lettered: int = 0
    """Records sent to the dead-letter topic."""
    read_back: int = 0
    """Records Faust skipped that the delivery guard read back from Kafka and handled."""
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class QueryStats:
    """The query worker's counters, cumulative since it started."""

    requests: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    expired_dropped: int = 0
    """Requests whose deadline had passed before they were read: not answered."""
    dead_lettered: int = 0
    """Unreadable requests with no request id or reply topic to answer to."""
    zero_hits: int = 0
    hits_withheld: int = 0
    """Store hits not admitted by the applied view (chunks of a version not (or no longer) applied)."""
    query_cache_hits: int = 0
    reply_failures: int = 0
    """Replies that could not be produced (e.g. an invalid ``reply_to``); logged."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
