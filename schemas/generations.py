"""The generations topic: which index generations exist and which one answers searches.

Written by ``freshet reindex`` (docs/reindex.md), read by every worker at start and
followed by the query workers. Compacted; two kinds of key:

- ``generation/<fingerprint>``: a :class:`GenerationRecord` with the generation's state
  (``building`` while its indexers catch up, ``active`` once switched to, ``retired`` once its
  collection is deleted);
- ``active``: the :class:`GenerationRecord` of the generation that answers searches now. Absent until
  the first switch: then the first generation (``FRESHET_COLLECTION``, no ``generation`` setting) is.

A record names everything a worker needs to serve or build the generation: its collection and
consumer-group prefix, and the settings that decide its objects (model, chunker).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ACTIVE_KEY = b"active"

#: The settings a generation fixes (the fields of :class:`workers.generation.Generation`'s source).
GENERATION_SETTINGS = ("model", "model_backend", "chunk_min_chars", "embed_title", "embed_headings",
                       "metadata_fields", "multi_tenancy")


def generation_key(generation: str) -> bytes:
    return f"generation/{generation}".encode()


class GenerationRecord(BaseModel):
    """One index generation."""

    model_config = ConfigDict(frozen=True)

    generation: str = Field(description="The fingerprint of the generation's settings (workers.generation).")
    state: Literal["building", "active", "retired"]
    collection: str = Field(description="Its Weaviate collection.")
    consumer_group_prefix: str = Field(description="Its indexers' consumer-group prefix (and state table).")
    settings: dict[str, str | int | float | bool] = Field(
        description="The settings that decide its objects, by Settings field name (GENERATION_SETTINGS).")
    replaces: str | None = Field(None, description="The collection of the generation it replaces.")
    at: datetime = Field(description="When this record was written.")

    def overrides(self, *, role: str) -> dict[str, object]:
        """The settings a worker of ``role`` takes to serve (query) or build (indexer) this generation;
        a query worker keeps its own consumer group (its requests' position)."""
        out: dict[str, object] = {**self.settings, "collection": self.collection, "generation": self.generation}
        if role == "indexer":
            out["consumer_group_prefix"] = self.consumer_group_prefix
        return out


def parse_generation(value: bytes) -> GenerationRecord:
    return GenerationRecord.model_validate_json(value)
