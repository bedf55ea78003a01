"""Chunking: a pure function from a document's text to its chunks.

A chunk is a run of whole blocks (paragraphs, lists, code blocks) under one heading path, bounded
by the model's token limit. Blocks are found from the text alone, and a chunk's boundaries depend
only on the blocks near it, so an edit changes only the chunks it touches.

A heading line opens the first chunk of its section (the model sees the heading with the text it
introduces); every chunk also carries its heading path as a property. The path is *not* part of
the embedded text: otherwise renaming a heading would re-embed its whole section.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

TokenCounter = Callable[[str], int]

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[*`])")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One unit of text that is embedded and stored as one Weaviate object."""

    text: str
    """The chunk's own text, as it stands in the document."""
    heading_path: tuple[str, ...]
    """The headings above the chunk, outermost first."""
    position: int
    """0-based index of the chunk in the document."""

    @property
    def embed_text(self) -> str:
        """What the model sees: the chunk's own text (with its heading line, if it opens a section)."""
        return self.text

    @property
    def content_hash(self) -> str:
        """Hash of what is embedded: equal hashes mean an equal vector."""
        return hashlib.sha256(self.embed_text.encode("utf-8")).hexdigest()

    @property
    def path_hash(self) -> str:
        """Short hash of the heading path: a change means a property update, never an embedding."""
        return hashlib.sha256("\x1f".join(self.heading_path).encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class _Block:
    text: str
    heading_path: tuple[str, ...]
    heading: bool = False


def chunk_document(
    content: str,
    *,
    content_type: str = "text/markdown",
    max_tokens: int = 256,
    count_tokens: TokenCounter,
    min_chars: int = 100,
) -> list[Chunk]:
    """Split ``content`` into chunks of at most ``max_tokens`` tokens (as counted).

    Blocks shorter than ``min_chars`` are merged with the next block under the same heading, so
    tiny paragraphs do not become meaningless chunks; blocks over the limit are split at
    sentences, and a sentence over the limit at words.
    """
    blocks = _markdown_blocks(content) if content_type == "text/markdown" else _plain_blocks(content)
    pieces: list[_Block] = []
    for block in blocks:
        for text in _fit(block.text, max_tokens, count_tokens):
            pieces.append(_Block(text, block.heading_path, block.heading))
    merged = _merge_small(pieces, min_chars, max_tokens, count_tokens)
    return [Chunk(b.text, b.heading_path, i) for i, b in enumerate(merged)]


def _plain_blocks(content: str) -> Iterator[_Block]:
    for para in re.split(r"\n\s*\n", content):
        if para.strip():
            yield _Block(para.strip(), ())


def _markdown_blocks(content: str) -> Iterator[_Block]:
    path: list[str] = []
    levels: list[int] = []
    current: list[str] = []
    in_fence = False

    def flush() -> Iterator[_Block]:
        text = "\n".join(current).strip()
        current.clear()
        if text:
            yield _Block(text, tuple(path))

    for line in content.splitlines():
        if _FENCE.match(line):
            if not in_fence:
                yield from flush()
            current.append(line)
            in_fence = not in_fence
            if not in_fence:
                yield from flush()
            continue
        if in_fence:
            current.append(line)
            continue
        heading = _HEADING.match(line)
        if heading:
            yield from flush()
            level = len(heading.group(1))
            while levels and levels[-1] >= level:
                levels.pop()
                path.pop()
            levels.append(level)
            path.append(heading.group(2))
            yield _Block(line.strip(), tuple(path), heading=True)
            continue
        if not line.strip():
            yield from flush()
            continue
        current.append(line)
    yield from flush()


def _fit(text: str, max_tokens: int, count_tokens: TokenCounter) -> list[str]:
    """Split ``text`` at sentences (then words) into pieces of at most ``max_tokens``."""
    if count_tokens(text) <= max_tokens:
        return [text]
    units = _SENTENCE_END.split(text)
    if len(units) == 1:
        units = text.split(" ")
        if len(units) == 1:  # one giant token run: cut by characters
            step = max(1, len(text) // (count_tokens(text) // max_tokens + 1))
            return [text[i : i + step] for i in range(0, len(text), step)]
    out: list[str] = []
    buf = ""
    for unit in units:
        candidate = f"{buf} {unit}".strip() if buf else unit
        if count_tokens(candidate) <= max_tokens:
            buf = candidate
            continue
        if buf:
            out.append(buf)
        buf = unit if count_tokens(unit) <= max_tokens else ""
        if not buf:
            out.extend(_fit(unit, max_tokens, count_tokens))
    if buf:
        out.append(buf)
    return out


def _merge_small(
    pieces: list[_Block], min_chars: int, max_tokens: int, count_tokens: TokenCounter
) -> list[_Block]:
    """Join a heading line to the block after it, and a short block to the next in its section."""
    out: list[_Block] = []
    for piece in pieces:
        prev = out[-1] if out else None
        if prev is not None and _joins(prev, piece, min_chars):
            text = prev.text + "\n\n" + piece.text
            if count_tokens(text) <= max_tokens:
                out[-1] = _Block(text, piece.heading_path)
                continue
        out.append(piece)
    return out


def _joins(prev: _Block, piece: _Block, min_chars: int) -> bool:
    if piece.heading:
        return False
    if prev.heading:
        return True
    return prev.heading_path == piece.heading_path and len(prev.text) < min_chars
