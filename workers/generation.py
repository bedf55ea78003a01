"""Index generations: what decides the vectors and objects of the index, and its collection name.

A generation is fixed by the model (with the variant its vectors come from: the ONNX backends'
vectors are a model of their own), the chunker settings, and the collection's property schema. Two
settings with the same :func:`fingerprint` build the same index; any difference needs a new
collection (docs/reindex.md). Only what changes the objects counts: batch sizes, devices,
ports and the torch/"bert" backend choice (same vectors) do not.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from freshet.errors import ConfigError
from schemas.generations import GENERATION_SETTINGS, GenerationRecord
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
        """A chunk stored by ``other`` with the content hash of one here has its vector: the same model
        and variant (a chunk's content hash covers everything the model sees, context included)."""
        return self.model_id == other.model_id


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


def generation_settings(settings: Settings) -> dict[str, object]:
    """The settings that make a generation (GENERATION_SETTINGS), by field name, as a record holds them."""
    return {name: getattr(settings, name) for name in GENERATION_SETTINGS}


def check_generation(settings: Settings) -> None:
    """Refuse (:class:`ConfigError`) a worker whose ``generation`` names other settings than its own:
    it would write one generation's objects under another's name."""
    if settings.generation and generation_of(settings).fingerprint != settings.generation:
        raise ConfigError(f"FRESHET_GENERATION is {settings.generation!r}, but these settings (model, chunker, "
                          f"schema) make generation {generation_of(settings).fingerprint!r}: start the worker with "
                          "the settings of its generation (freshet reindex --status lists them), or without "
                          "FRESHET_GENERATION to follow the active one")


def adopt(settings: Settings, role: str, active: GenerationRecord | None) -> Settings:
    """The settings a worker runs with: its own when they name a generation (``FRESHET_GENERATION``,
    set by freshet reindex on the indexers it starts) or when none is active yet; else the active
    generation's (collection, model, chunker and, for an indexer, its consumer groups)."""
    if settings.generation or active is None:
        return settings
    return settings.model_copy(update=active.overrides(role=role))


def generation_record(base: Settings, overrides: dict[str, object], *, state: str, at: datetime,
                      replaces: str | None = None, names: Settings | None = None) -> tuple[Settings, GenerationRecord]:
    """The settings and record of the generation ``base`` makes with ``overrides`` (field name ->
    value): its collection ``<collection>_<fingerprint>`` and consumer-group prefix
    ``<prefix>-indexer-<fingerprint>`` (inside the indexer's Kafka ACL prefix), the collection and
    prefix taken from ``names`` (the configured ones, not an adopted generation's), else ``base``."""
    names = names or base
    unknown = sorted(set(overrides) - set(GENERATION_SETTINGS))
    if unknown:
        raise ConfigError(f"freshet reindex changes only {', '.join(GENERATION_SETTINGS)}; not {', '.join(unknown)}")
    target = type(base)(**{**base.model_dump(), **overrides})  # validated: '400' from a command line is 400
    gen = generation_of(target)
    fp = gen.fingerprint
    record = GenerationRecord.model_validate({
        "generation": fp, "state": state, "collection": collection_name(names.collection, gen),
        "consumer_group_prefix": f"{names.consumer_group_prefix}-indexer-{fp}",
        "settings": generation_settings(target),
        "replaces": replaces, "at": at})
    return target.model_copy(update=record.overrides(role="indexer")), record


def read_generations(settings: Settings) -> tuple[GenerationRecord | None, dict[str, GenerationRecord]]:
    """The active generation (None before the first switch) and every generation by fingerprint, as
    the generations topic holds them now (an absent topic holds none)."""
    from freshet.client import read_to_end
    from schemas.generations import ACTIVE_KEY, parse_generation

    active: GenerationRecord | None = None
    known: dict[str, GenerationRecord] = {}
    for r in read_to_end(settings.kafka_access, settings.topic_generations):
        if r.value is None:
            continue
        record = parse_generation(r.value)
        if r.key == ACTIVE_KEY:
            active = record
        else:
            known[record.generation] = record
    return active, known
