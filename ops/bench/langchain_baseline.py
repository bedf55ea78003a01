"""What LangChain's indexing API spends in embeddings when it replays a real document edit history.

Three figures for one JSONL edit history (``{"doc_id", "op": "upsert"|"delete", "version", "content"}``,
the first ``start`` lines being the initial snapshot):

- :func:`new_paragraph_chars`: the characters of the paragraphs that are new in each version, a floor
  for any paragraph-level change detector;
- :func:`langchain_edit_cost`: what ``langchain_core.indexing.index(cleanup="incremental")`` hands the
  embedding function, with ``RecursiveCharacterTextSplitter`` chunks;
- :func:`full_reembed_cost`: every chunk of every new version, i.e. no change detection at all.

Benchmark-only: needs the ``bench`` dependency group (``uv sync --group dev --group bench``) and is
never imported by the indexer. Run ``python -m ops.bench.langchain_baseline [PATH]`` for the report.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.indexing import IndexingResult, InMemoryRecordManager, index
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_text_splitters import RecursiveCharacterTextSplitter
from tqdm import tqdm

Event = dict[str, Any]
"""One decoded JSONL line: ``doc_id``, ``op``, ``version`` and, for upserts, ``content``."""

SNAPSHOT_EVENTS = 84
"""Lines of ``fastapi-docs-edits.jsonl`` that form the initial snapshot; the edits follow them."""

SOURCE_KEY = "source"
"""Metadata key carrying the doc_id; LangChain's ``source_id_key`` (the record manager's group id)."""

DEFAULT_DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "fastapi-docs-edits.jsonl"
"""``shared/`` sits beside the repository checkout, locally and in CI."""


class EditCost(TypedDict):
    """What the edits (not the initial load) cost through ``index(cleanup="incremental")``."""

    chars: int
    """Characters given to the embedding function (``embed_documents`` and ``embed_query``)."""
    texts: int
    """Number of texts given to the embedding function."""
    tokens: int
    """Tokens of those texts, as ``count_tokens`` counts them (0 without one)."""
    num_added: int
    """Chunks written to the vector store, summed over every ``index()`` result."""
    num_deleted: int
    """Chunks removed: incremental cleanup of replaced chunks plus whole-document deletes."""
    num_skipped: int
    """Chunks found unchanged (already in the record manager), hence not embedded again."""


class ReembedCost(TypedDict):
    """What re-embedding every chunk of every new version costs."""

    chars: int
    """Characters of every chunk of every upserted version."""
    texts: int
    """Number of those chunks."""
    versions: int
    """Upserts replayed (deletes cost nothing)."""


class ReplayMismatchError(RuntimeError):
    """The vector store after a replay does not hold exactly the chunks of the live documents."""


class CountingEmbeddings(Embeddings):
    """Counts what it is asked to embed; returns 8 floats derived from a hash of each text.

    The vectors are meaningless but deterministic: only the texts handed in are measured.
    """

    def __init__(self, count_tokens: Callable[[str], int] | None = None) -> None:
        self._count_tokens = count_tokens
        self.chars = 0
        self.texts = 0
        self.tokens = 0

    def reset(self) -> None:
        """Zero the counters (after the initial load)."""
        self.chars = 0
        self.texts = 0
        self.tokens = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Count ``texts`` and return one fake vector per text."""
        self.chars += sum(len(text) for text in texts)
        self.texts += len(texts)
        if self._count_tokens is not None:
            self.tokens += sum(self._count_tokens(text) for text in texts)
        return [fake_vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        """Count ``text`` and return its fake vector."""
        return self.embed_documents([text])[0]


def fake_vector(text: str) -> list[float]:
    """Eight floats in [0, 1] from a BLAKE2b digest of ``text``; equal texts get equal vectors."""
    return [byte / 255 for byte in hashlib.blake2b(text.encode(), digest_size=8).digest()]


def load_events(path: Path | str) -> list[Event]:
    """Decode one JSON object per non-blank line of ``path``, in file order."""
    with Path(path).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def paragraphs(content: str) -> list[str]:
    """Paragraphs of ``content``: ``content.split("\\n\\n")``, each stripped, empty ones dropped.

    Of the rules tried on fastapi-docs-edits.jsonl this one reproduces the stated ~1.70M new-paragraph
    characters best (1,696,149); ``re.split(r"\\n\\s*\\n")`` + strip gives 1,690,514, either split
    without strip 1.75M-1.76M. Duplicates are kept, in order.
    """
    return [stripped for part in content.split("\n\n") if (stripped := part.strip())]


def new_paragraph_chars(events: Sequence[Event], start: int = SNAPSHOT_EVENTS) -> int:
    """Total characters of the paragraphs new in each upsert of ``events[start:]``.

    A paragraph (see :func:`paragraphs`) is new when the same doc_id's previous version (its last
    upsert before this event; none after a delete, or for a first version) did not contain it. Every
    occurrence counts, so a new paragraph repeated twice in one version counts twice. ``events[:start]``
    only establish the previous versions.
    """
    previous: dict[str, frozenset[str]] = {}
    total = 0
    for position, event in enumerate(events):
        doc_id = event["doc_id"]
        if _op(event) == "delete":
            previous.pop(doc_id, None)
            continue
        current = paragraphs(event["content"])
        if position >= start:
            seen = previous.get(doc_id, frozenset())
            total += sum(len(paragraph) for paragraph in current if paragraph not in seen)
        previous[doc_id] = frozenset(current)
    return total


def chunk_version(splitter: RecursiveCharacterTextSplitter, doc_id: str, content: str) -> list[Document]:
    """Chunks of one version, each with metadata exactly ``{"source": doc_id}``.

    Trap: ``index()`` hashes the metadata with the text, so any per-version metadata (a version
    number, ``add_start_index=True`` offsets) would make every chunk look new on every edit.
    """
    return splitter.create_documents([content], metadatas=[{SOURCE_KEY: doc_id}])


def langchain_edit_cost(
    events: Sequence[Event],
    chunk_size: int,
    chunk_overlap: int,
    start: int = SNAPSHOT_EVENTS,
    *,
    progress: bool = False,
    count_tokens: Callable[[str], int] | None = None,
) -> EditCost:
    """Replay ``events`` through ``langchain_core.indexing.index(cleanup="incremental")``; cost of the edits.

    ``events[:start]`` are indexed first, the counters reset, then each event of ``events[start:]`` is
    applied on its own: an upsert indexes that version's chunks (``source_id_key="source"``, default
    ``batch_size=100``), so incremental cleanup removes the chunks of the previous version that are gone.
    ``key_encoder="sha256"`` only silences the SHA-1 warning; which chunks count as new does not change.

    Deletes: ``index()`` in incremental mode cleans up only the sources of the documents it is given,
    so calling it with no documents deletes nothing. A delete (and an upsert that splits into no chunks)
    therefore lists the source's keys in the record manager (``list_keys(group_ids=[doc_id])``), deletes
    them from the vector store, then from the record manager (LangChain's own order), and counts them in
    ``num_deleted``.

    After the replay the vector store must hold exactly the chunks of every live document's last
    version, else :class:`ReplayMismatchError` (this catches stale chunks, e.g. a clock tie that
    ``InMemoryRecordManager``'s strict ``updated_at < before`` test would leave behind).

    Trap: cleanup runs after every batch of 100 chunks, so a version of more than 100 chunks would have
    unchanged chunks of its later batches deleted and then embedded again. Not triggered on
    fastapi-docs-edits.jsonl: its largest version splits into 44 chunks at (1000, 200), 92 at (500, 50).
    """
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    embeddings = CountingEmbeddings(count_tokens)
    record_manager = InMemoryRecordManager(namespace="freshet-bench")
    vector_store = InMemoryVectorStore(embedding=embeddings)
    for event in events[:start]:
        _apply(event, splitter, record_manager, vector_store)
    embeddings.reset()
    added = deleted = skipped = 0
    for event in tqdm(events[start:], desc=f"langchain {chunk_size}/{chunk_overlap}", disable=not progress):
        result = _apply(event, splitter, record_manager, vector_store)
        added += result["num_added"]
        deleted += result["num_deleted"]
        skipped += result["num_skipped"]
    _check_store(vector_store, _live_chunks(events, splitter))
    return EditCost(
        chars=embeddings.chars, texts=embeddings.texts, tokens=embeddings.tokens,
        num_added=added, num_deleted=deleted, num_skipped=skipped,
    )


def full_reembed_cost(
    events: Sequence[Event], chunk_size: int, chunk_overlap: int, start: int = SNAPSHOT_EVENTS
) -> ReembedCost:
    """Characters and count of every chunk of every upsert in ``events[start:]``, split as LangChain would.

    Overlap is counted as often as it is embedded. On fastapi-docs-edits.jsonl (1000, 200) gives 21.70M
    characters; the stated ~19.4M is what (500, 50) gives (19,352,148). The unsplit versions are 19.04M.
    """
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    chars = texts = versions = 0
    for event in events[start:]:
        if _op(event) == "upsert":
            chunks = splitter.split_text(event["content"])
            chars += sum(len(chunk) for chunk in chunks)
            texts += len(chunks)
            versions += 1
    return ReembedCost(chars=chars, texts=texts, versions=versions)


def _op(event: Event) -> str:
    """The event's op, checked: anything but ``upsert``/``delete`` is a malformed line."""
    op = event["op"]
    if op not in ("upsert", "delete"):
        raise ValueError(f"event for {event.get('doc_id')!r} has op {op!r}; expected 'upsert' or 'delete'")
    return str(op)


def _apply(
    event: Event,
    splitter: RecursiveCharacterTextSplitter,
    record_manager: InMemoryRecordManager,
    vector_store: InMemoryVectorStore,
) -> IndexingResult:
    """Apply one event: ``index()`` for a version with chunks, an explicit source delete otherwise."""
    doc_id = event["doc_id"]
    docs = chunk_version(splitter, doc_id, event["content"]) if _op(event) == "upsert" else []
    if docs:
        return index(
            docs, record_manager, vector_store, cleanup="incremental", source_id_key=SOURCE_KEY, key_encoder="sha256"
        )
    keys = record_manager.list_keys(group_ids=[doc_id])
    if keys:
        vector_store.delete(keys)
        record_manager.delete_keys(keys)
    return IndexingResult(num_added=0, num_updated=0, num_skipped=0, num_deleted=len(keys))


def _live_chunks(events: Sequence[Event], splitter: RecursiveCharacterTextSplitter) -> set[tuple[str, str]]:
    """``(doc_id, chunk text)`` of the last version of every document not deleted since."""
    latest: dict[str, str] = {}
    for event in events:
        if _op(event) == "delete":
            latest.pop(event["doc_id"], None)
        else:
            latest[event["doc_id"]] = event["content"]
    return {(doc_id, chunk) for doc_id, content in latest.items() for chunk in splitter.split_text(content)}


def _check_store(vector_store: InMemoryVectorStore, expected: set[tuple[str, str]]) -> None:
    """Raise :class:`ReplayMismatchError` unless the store holds exactly ``expected``, once each."""
    held = [(record["metadata"][SOURCE_KEY], record["text"]) for record in vector_store.store.values()]
    if len(held) != len(set(held)) or set(held) != expected:
        stale, missing = len(set(held) - expected), len(expected - set(held))
        raise ReplayMismatchError(
            f"vector store holds {len(held)} chunks ({stale} stale, {missing} missing) for {len(expected)} "
            "expected; the replay did not converge, check delete handling and record-manager timestamps"
        )


def _row(label: str, chars: int, detail: str = "") -> str:
    """One aligned report line: label, characters, optional detail."""
    return f"{label:<38}{chars:>12,} chars{detail}"


def main(argv: Sequence[str] | None = None) -> None:
    """Print the report for one edit-history file (default: shared/datasets/fastapi-docs-edits.jsonl)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--start", type=int, default=SNAPSHOT_EVENTS, help="events in the initial snapshot")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    events = load_events(args.path)
    start: int = args.start
    print(f"{args.path}: {len(events)} events, {len(events) - start} edits after the first {start}")
    print(_row("new-paragraph characters", new_paragraph_chars(events, start)))
    for size, overlap in ((1000, 200), (500, 50)):
        cost = langchain_edit_cost(events, size, overlap, start, progress=True)
        detail = (
            f" in {cost['texts']:,} texts (added {cost['num_added']:,}, deleted {cost['num_deleted']:,}, "
            f"skipped {cost['num_skipped']:,})"
        )
        print(_row(f"langchain incremental ({size}, {overlap})", cost["chars"], detail))
    for size, overlap in ((1000, 200), (500, 50)):
        full = full_reembed_cost(events, size, overlap, start)
        print(_row(f"full re-embed ({size}, {overlap})", full["chars"], f" in {full['texts']:,} texts"))
    print(f"runtime: {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
