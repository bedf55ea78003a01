"""JSON Schema files of the contracts, for producers and consumers in any language.

``freshet schemas`` writes them to ``schemas/json/``; a unit test fails when they drift from the
pydantic models.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.applied import AppliedRecord, ProgressRecord
from schemas.change import ChangeEvent
from schemas.metrics import MetricsSnapshot
from schemas.search import SearchReply, SearchRequest

JSON_DIR = Path(__file__).resolve().parent / "json"

CONTRACTS: dict[str, type[BaseModel]] = {
    "change-event.v1.schema.json": ChangeEvent,
    "search-request.v1.schema.json": SearchRequest,
    "search-reply.v1.schema.json": SearchReply,
    "applied.v1.schema.json": AppliedRecord,
    "applied-progress.v1.schema.json": ProgressRecord,
    "metrics-snapshot.v1.schema.json": MetricsSnapshot,
}


def render(model: type[BaseModel], filename: str) -> str:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": filename,
              **model.model_json_schema()}
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for filename, model in CONTRACTS.items():
        path = directory / filename
        path.write_text(render(model, filename), encoding="utf-8")
        out.append(path)
    return out
