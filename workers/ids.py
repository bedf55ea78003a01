"""Chunk identity: uuid5 ids derived from the document and the chunk's content, never from the server."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from workers.chunking import Chunk

#: Namespace of chunk ids. Never change it: every stored id derives from it.
CHUNK_NAMESPACE = uuid.UUID("6f1d7a2c-3b8e-5c4d-9a10-f7e2b3c4d5e6")


def chunk_id(tenant: str | None, doc_id: str, content_hash: str, occurrence: int) -> str:
    """Stable id of a chunk: the same text at the same occurrence in a document keeps its id."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{tenant or ''}\x1f{doc_id}\x1f{content_hash}\x1f{occurrence}"))


def chunk_ids(tenant: str | None, doc_id: str, chunks: Sequence[Chunk]) -> list[str]:
    """Ids of a document's chunks; repeated identical chunks are told apart by occurrence."""
    seen: Counter[str] = Counter()
    ids = []
    for chunk in chunks:
        h = chunk.content_hash
        ids.append(chunk_id(tenant, doc_id, h, seen[h]))
        seen[h] += 1
    return ids
