"""The applied record: the indexer's acknowledgement that a change is written to Weaviate.

Published on the applied topic (key: the document key) after Weaviate has acknowledged every
write the change caused. Clients wait on it (``freshet publish --wait``, the demo) and the query
worker keeps its view of the applied documents from it, so replies never mix two versions.

The topic carries two kinds of record, told apart by ``kind``: a :class:`AppliedRecord` per
document, and a :class:`ProgressRecord` per changes partition after each batch ("every record of
partition p below ``through`` is handled"). Both go to the applied topic's partition
``source partition mod partitions``, after the writes they announce, so a reader that has seen a
progress record has also seen every document record it covers (read-your-writes fences).

**Generations.** The indexer of a generation built by ``freshet reindex`` (docs/reindex.md)
writes to the same topic, its records tagged with ``generation`` and their keys prefixed with it
(``<generation>\x1e<document key>``, and ``\x00progress/<generation>/<partition>``), so the two
generations' records never compact each other away. Records without a ``generation`` belong to the
first generation (the collection ``FRESHET_COLLECTION``); a reader keeps to one generation's records.
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
    generation: str | None = Field(None, description="The index generation this change is applied to; "
                                                     "absent for the first generation.")


class ProgressRecord(BaseModel):
    """Every record of changes partition ``partition`` below offset ``through`` is handled."""

    kind: Literal["progress"] = "progress"
    partition: int = Field(ge=0)
    through: int = Field(ge=0, description="The offset after the last handled record.")
    generation: str | None = Field(None, description="The index generation; absent for the first generation.")


#: Between a generation and the document key in an applied record's key (identities hold no control characters).
GENERATION_SEPARATOR = "\x1e"


def applied_key(document_key: str, generation: str | None = None) -> bytes:
    """The key of a document's applied record: the document key, behind its generation if any."""
    return (f"{generation}{GENERATION_SEPARATOR}{document_key}" if generation else document_key).encode()


def progress_key(partition: int, generation: str | None = None) -> bytes:
    return (f"\x00progress/{generation}/{partition}" if generation else f"\x00progress/{partition}").encode()


def generation_prefixes(generation: str) -> tuple[str, str]:
    """How the keys of ``generation``'s document records and progress records begin."""
    return f"{generation}{GENERATION_SEPARATOR}", f"\x00progress/{generation}/"


def parse_applied(value: bytes) -> AppliedRecord | ProgressRecord:
    """Decode one record of the applied topic."""
    raw = json.loads(value)
    if not isinstance(raw, dict):
        raise ValueError(f"an applied record must be a JSON object, got {type(raw).__name__}")
    if raw.get("kind") == "progress":
        return ProgressRecord.model_validate_json(value)
    return AppliedRecord.model_validate_json(value)
