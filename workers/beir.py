"""Retrieval test sets in BEIR layout, read from disk (pure: no network, no model).

A dataset directory holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/test.tsv`` (``query-id  corpus-id  score``, tab-separated, after a
header line). Traps: some published subsets repeat the header line, and most queries of a
``queries.jsonl`` may have no judgements at all; only judged queries are evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from freshet.errors import FreshetError
from schemas.change import ChangeEvent

Qrels = dict[str, dict[str, int]]
"""Query id -> document id -> graded relevance (0 = judged not relevant)."""


@dataclass(frozen=True, slots=True)
class Passage:
    """One corpus entry."""

    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class Dataset:
    """A corpus, its judged queries and their judgements."""

    path: Path
    corpus: list[Passage]
    queries: dict[str, str]
    """Query id -> text, only the queries that have judgements, in file order."""
    qrels: Qrels
    """Judgements of exactly the queries in :attr:`queries`."""


def load_dataset(path: Path, *, limit_queries: int | None = None) -> Dataset:
    """Read a BEIR directory; keep the first ``limit_queries`` judged queries if given."""
    qrels = read_qrels(path / "qrels" / "test.tsv")
    queries = {qid: text for qid, text in read_queries(path / "queries.jsonl") if qid in qrels}
    if limit_queries is not None:
        queries = dict(list(queries.items())[:limit_queries])
    if not queries:
        raise FreshetError(f"{path}: no query of queries.jsonl has a judgement in qrels/test.tsv; "
                           "check that the ids agree")
    return Dataset(path, read_corpus(path / "corpus.jsonl"), queries, {q: qrels[q] for q in queries})


def read_qrels(path: Path) -> Qrels:
    """``query-id  corpus-id  score`` lines; header lines (wherever they appear) are skipped."""
    out: Qrels = {}
    for n, line in _lines(path):
        parts = line.split("\t")
        if parts[0] == "query-id":
            continue
        if len(parts) != 3 or not parts[2].strip().lstrip("-").isdigit():
            raise FreshetError(f"{path}:{n}: expected 'query-id<TAB>corpus-id<TAB>integer score', got {line!r}")
        out.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return out


def read_corpus(path: Path) -> list[Passage]:
    out: list[Passage] = []
    for n, obj in _json_lines(path):
        try:
            out.append(Passage(str(obj["_id"]), str(obj.get("title") or ""), str(obj.get("text") or "")))
        except KeyError as exc:
            raise FreshetError(f"{path}:{n}: a corpus entry needs '_id'") from exc
    return out


def read_queries(path: Path) -> list[tuple[str, str]]:
    """``(query id, text)`` of every query of a ``queries.jsonl``, judged or not, in file order."""
    try:
        return [(str(obj["_id"]), str(obj["text"])) for _, obj in _json_lines(path)]
    except KeyError as exc:
        raise FreshetError(f"{path}: every query needs '_id' and 'text' (missing {exc})") from exc


def change_event(p: Passage) -> ChangeEvent:
    """The upsert that indexes ``p``: plain text (a passage has no Markdown structure), version 1.

    The title is stored with every chunk and searched by BM25, but not embedded: the indexer
    embeds only the chunk text (see :mod:`workers.chunking`).
    """
    try:
        return ChangeEvent(doc_id=p.doc_id, op="upsert", version=1, content=p.text, title=p.title or None,
                           content_type="text/plain")
    except ValidationError as exc:
        raise FreshetError(f"corpus entry {p.doc_id!r} is not a valid change event: {exc}") from exc


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FreshetError(f"cannot read {path}: {exc}; is it a BEIR dataset directory?") from exc
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), 1) if line.strip()]


def _json_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for n, line in _lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FreshetError(f"{path}:{n}: not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise FreshetError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
        out.append((n, obj))
    return out
