"""Index generations: what decides the vectors and objects of the index, and its collection name.

A generation is fixed by the model (with the variant its vectors come from: the ONNX backends'
vectors are a model of their own), the chunker settings, and the collection's property schema. Two
settings with the same :func:`fingerprint` build the same index; any difference needs a new
collection (docs/design/reindex.md). Only what changes the objects counts: batch sizes, devices,
ports and the torch/"bert" backend choice (same vectors) do not.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from workers.embedding import model_identity

if TYPE_CHECKING:
    from freshet.settings import Settings

#: Bump when the properties freshet writes on a chunk object change incompatibly.
OBJECT_SCHEMA = 1

#: Weaviate collection (class) names: a capital letter, then letters, digits and underscores.
_COLLECTION = re.compile(r"^[A-Z][_0-9A-Za-z]*$")


@dataclass(frozen=True)
class Generation:
    """The settings that decide the index's objects."""

    model_id: str
    """The model and its vector variant, as the embedding cache keys it (``model@onnx-int8``)."""
    chunk_min_chars: int
    embed_title: str
    embed_headings: bool
    metadata_fields: str
    """The declared metadata properties (their names and types are part of the schema)."""
    multi_tenancy: bool
    object_schema: int = OBJECT_SCHEMA

    @property
    def fingerprint(self) -> str:
        """Ten hex digits naming this generation; equal for equal settings, in any process."""
        blob = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:10]

    def vectors_compatible(self, other: Generation) -> bool:
        """A chunk embedded for ``other`` has the vector it would have here: same model, same
        variant, and the same text before the chunk (title and headings context)."""
        return (self.model_id, self.embed_title, self.embed_headings) == (
            other.model_id, other.embed_title, other.embed_headings)


def generation_of(settings: Settings) -> Generation:
    """The generation these settings build."""
    return Generation(
        model_id=model_identity(settings.model, settings.model_backend),
        chunk_min_chars=settings.chunk_min_chars,
        embed_title=settings.embed_title,
        embed_headings=settings.embed_headings,
        metadata_fields=",".join(sorted(p.strip() for p in settings.metadata_fields.split(",") if p.strip())),
        multi_tenancy=settings.multi_tenancy,
    )


def collection_name(base: str, generation: Generation) -> str:
    """The collection of ``generation``: ``<base>_<fingerprint>``; raises ValueError for a base
    Weaviate would not accept as a collection name."""
    if not _COLLECTION.match(base):
        raise ValueError(f"collection name {base!r} must start with a capital letter and hold only letters, "
                         "digits and underscores")
    return f"{base}_{generation.fingerprint}"
