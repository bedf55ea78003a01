"""The applied record: the indexer's acknowledgement that a change is written to Weaviate.

Published on the applied topic (key: the document key) after Weaviate has acknowledged every
write the change caused. Clients wait on it (``freshet publish --wait``, the demo) and the query
worker will use it to keep replies consistent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class AppliedRecord(BaseModel):
    """One change that is now in the index."""

    doc_id: str
    tenant: str | None = None
    version: int
    op: Literal["upsert", "delete"]
    chunk_ids: list[str] = Field(default_factory=list, description="Ids of the document's chunks now.")
    source_partition: int
    source_offset: int
    event_time: datetime | None = None
    applied_at: datetime
