"""The applied record: the indexer's acknowledgement that a change is written to Weaviate.

Published on the applied topic (key: the document key) after Weaviate has acknowledged every
write the change caused. Clients wait on it (``freshet publish --wait``, the demo) and the query
worker keeps its view of the applied documents from it, so replies never mix two versions.

The topic carries two kinds of record, told apart by ``kind``: a :class:`AppliedRecord` per
document, and a :class:`ProgressRecord` per changes partition after each batch ("every record of
partition p below ``through`` is handled"). Both go to the applied topic's partition
``source partition mod partitions``, after the writes they announce, so a reader that has seen a
progress record has also seen every document record it covers (read-your-writes fences).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class AppliedRecord(BaseModel):
    """One change that is now in the index."""

    kind: Literal["document"] = "document"
    doc_id: str
    tenant: str | None = None
    version: int
    op: Literal["upsert", "delete"]
    chunk_ids: list[str] = Field(default_factory=list, description="Ids of the document's chunks now.")
    source_partition: int
    source_offset: int
    event_time: datetime | None = None
    applied_at: datetime


class ProgressRecord(BaseModel):
    """Every record of changes partition ``partition`` below offset ``through`` is handled."""

    kind: Literal["progress"] = "progress"
    partition: int = Field(ge=0)
    through: int = Field(ge=0, description="The offset after the last handled record.")


def progress_key(partition: int) -> bytes:
    return f"\x00progress/{partition}".encode()


def parse_applied(value: bytes) -> AppliedRecord | ProgressRecord:
    """Decode one record of the applied topic."""
    raw = json.loads(value)
    if not isinstance(raw, dict):
        raise ValueError(f"an applied record must be a JSON object, got {type(raw).__name__}")
    if raw.get("kind") == "progress":
        return ProgressRecord.model_validate_json(value)
    return AppliedRecord.model_validate_json(value)
