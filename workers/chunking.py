"""Chunking: a pure function from a document's text to its chunks.

A chunk is a run of whole blocks (paragraphs, lists, code blocks) under one heading path, bounded
by the model's token limit. Blocks are found from the text alone, and a chunk's boundaries depend
only on the blocks near it, so an edit changes only the chunks it touches.

A heading line opens the first chunk of its section (the model sees the heading with the text it
introduces), and a heading with no body of its own (an H1 directly followed by an H2) joins the
chunk after it instead of standing alone; every chunk also carries its heading path as a property.

What the model sees may add context ahead of the chunk's text (:class:`Context`): the document's
title (ahead of the first chunk only, or of every chunk), its heading path, or both
(``FRESHET_EMBED_TITLE``, ``FRESHET_EMBED_HEADINGS``). Context costs edits: a title change re-embeds
the first chunk (or the whole document), a renamed heading its whole section. The tokens the
context takes are kept free in every chunk of its section, so nothing is cut off.

Chunking time is near-linear in the text's length whatever its shape (hostile Markdown too): no
backtracking patterns, and a piece is never re-counted once per added word.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal

TitleContext = Literal["none", "first", "all"]
TokenCounter = Callable[[str], int]
"""Tokens in a text. Must not decrease when a space and more text are appended: the chunker
searches for where a piece overflows instead of counting it once per added word."""

_FENCES = ("```", "~~~")
# Linear: an attempt starts only right after a [.!?], so each whitespace run is scanned once.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[*`])")
# Interpolated guesses before the search falls back to galloping and bisection.
_GUESSES = 3


@dataclass(frozen=True, slots=True)
class Context:
    """What the model sees ahead of each chunk's text, besides the text itself."""

    title: TitleContext = "none"
    """The document's title ahead of no chunk, the first chunk only, or every chunk."""
    headings: bool = False
    """The chunk's heading path, outermost first, joined by ' > '."""

    def prefix(self, title: str | None, heading_path: tuple[str, ...], *, first: bool = True) -> str:
        """The lines put ahead of a chunk's text (empty: none); ``first``: the document's first chunk."""
        lines = []
        if (self.title == "all" or (self.title == "first" and first)) and title and title.strip():
            lines.append(" ".join(title.split()))
        if self.headings and heading_path:
            lines.append(" > ".join(heading_path))
        return "\n".join(lines)


#: The default: the model sees each chunk's own text only.
NO_CONTEXT = Context()


@dataclass(frozen=True, slots=True)
class Chunk:
    """One unit of text that is embedded and stored as one Weaviate object."""

    text: str
    """The chunk's own text, as it stands in the document."""
    heading_path: tuple[str, ...]
    """The headings above the chunk, outermost first."""
    position: int
    """0-based index of the chunk in the document."""
    context: str = ""
    """Lines the model sees ahead of the text (:class:`Context`); empty by default."""

    @property
    def embed_text(self) -> str:
        """What the model sees: the context, if any, then the chunk's own text (with its heading
        line, if it opens a section)."""
        return f"{self.context}\n\n{self.text}" if self.context else self.text

    @property
    def content_hash(self) -> str:
        """Hash of what is embedded: equal hashes mean an equal vector."""
        return hashlib.sha256(self.embed_text.encode("utf-8")).hexdigest()

    @property
    def path_hash(self) -> str:
        """Short hash of the heading path: a change means a property update, never an embedding."""
        return hashlib.sha256("\x1f".join(self.heading_path).encode("utf-8")).hexdigest()[:12]


@dataclass(slots=True)
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
    title: str | None = None,
    context: Context = NO_CONTEXT,
) -> list[Chunk]:
    """Split ``content`` into chunks of at most ``max_tokens`` tokens (as counted), context included.

    Blocks shorter than ``min_chars`` are merged with the next block under the same heading, so
    tiny paragraphs do not become meaningless chunks; blocks over the limit are split at
    sentences, and a sentence over the limit at words. Linear in the length of ``content``, whatever
    its shape; a chunk's text must never change for the same input (chunk ids derive from it).
    """
    blocks = _markdown_blocks(content) if content_type == "text/markdown" else _plain_blocks(content)
    budgets: dict[tuple[str, ...], int] = {}
    lead = blocks[0].heading_path if blocks else ()  # the first chunk's section: room for a "first" title

    def budget(path: tuple[str, ...]) -> int:
        """Tokens left for the text under ``path`` once its context is in (at least a quarter)."""
        if path not in budgets:
            prefix = context.prefix(title, path, first=path == lead)
            taken = count_tokens(prefix + "\n\n") if prefix else 0
            budgets[path] = max(max_tokens // 4, max_tokens - taken)
        return budgets[path]

    pieces: list[_Block] = []
    for block in blocks:
        tokens = count_tokens(block.text)
        limit = budget(block.heading_path)
        if tokens <= limit:
            pieces.append(block)
        else:
            texts = _fit(block.text, limit, count_tokens, tokens)
            pieces.extend(_Block(text, block.heading_path, block.heading) for text in texts)
    merged = _merge_small(pieces, min_chars, budget, count_tokens)
    return [Chunk(b.text, b.heading_path, i, context.prefix(title, b.heading_path, first=i == 0))
            for i, b in enumerate(merged)]


def _plain_blocks(content: str) -> list[_Block]:
    # Linear: an attempt starts only at a newline and gives up at the end of its whitespace run.
    return [_Block(para.strip(), ()) for para in re.split(r"\n\s*\n", content) if para.strip()]


def _markdown_blocks(content: str) -> list[_Block]:
    """Paragraphs, fenced code and heading lines, each with the heading path above it.

    Plain string tests, no regexes: this runs once per line and must stay linear on any input.
    """
    blocks: list[_Block] = []
    path: tuple[str, ...] = ()
    levels: list[int] = []
    current: list[str] = []
    in_fence = False

    def flush() -> None:
        text = "\n".join(current).strip()
        current.clear()
        if text:
            blocks.append(_Block(text, path))

    for line in content.splitlines():
        # A cheap substring test first: most lines are no fence, and lstrip() copies the line.
        fence = ("```" in line or "~~~" in line) and line.lstrip().startswith(_FENCES)
        if in_fence:
            current.append(line)
            if fence:
                in_fence = False
                flush()
        elif fence:
            if current:
                flush()
            current.append(line)
            in_fence = True
        elif line.startswith("#") and (heading := _heading(line)):
            if current:
                flush()
            level, title = heading
            keep = len(levels)
            while keep and levels[keep - 1] >= level:
                keep -= 1
            del levels[keep:]
            levels.append(level)
            path = (*path[:keep], title)
            blocks.append(_Block(line.strip(), path, heading=True))
        elif not line or line.isspace():
            if current:
                flush()
        else:
            current.append(line)
    flush()
    return blocks


def _heading(line: str) -> tuple[int, str] | None:
    """Level and title of an ATX heading: 1 to 6 '#', whitespace, the title, optional closing '#'s.

    The same result as matching ``^(#{1,6})\\s+(.*?)\\s*#*\\s*$``, in linear time: that regex
    backtracked cubically on a long whitespace run inside the title (``\\s`` and ``str.strip``
    agree on what whitespace is).
    """
    level = len(line) - len(line.lstrip("#"))
    if not 1 <= level <= 6 or not line[level : level + 1].isspace():
        return None
    return level, line[level:].strip().rstrip("#").rstrip()


def _fit(text: str, max_tokens: int, count_tokens: TokenCounter, total: int | None = None) -> list[str]:
    """Split ``text`` at sentences (then words) into pieces of at most ``max_tokens``.

    ``total`` is ``count_tokens(text)`` if the caller has counted it already.
    """
    if total is None:
        total = count_tokens(text)
    if total <= max_tokens:
        return [text]
    units = _SENTENCE_END.split(text)
    if len(units) == 1:
        units = text.split(" ")
        if len(units) == 1:  # one giant token run: cut by characters
            step = max(1, len(text) // (total // max_tokens + 1))
            return [text[i : i + step] for i in range(0, len(text), step)]
    return _Packer(units, max_tokens, count_tokens, total / len(text)).pack()


class _Packer:
    """Packs units greedily into pieces of at most ``max_tokens``, joined by single spaces.

    The contract is the simple loop: append the next unit to the buffer (``f"{buf} {unit}".strip()``)
    while the result fits; otherwise emit the buffer and restart it with the unit, split further if
    the unit alone is too big. Counting every candidate made that loop quadratic: a 1 MB line split
    at words re-counted a whole piece for every word. Here, once the buffer is stripped, its
    candidates are prefixes of one string (blank units leave it unchanged), so the longest one that
    fits is searched for: a few counts per piece, guessed from the tokens per character seen so far.
    With a counter that never decreases as text is appended, the pieces are the loop's, exactly
    (with any counter, every piece still fits).
    """

    def __init__(self, units: list[str], max_tokens: int, count_tokens: TokenCounter, rate: float) -> None:
        self.units = units
        self.max_tokens = max_tokens
        self.count_tokens = count_tokens
        self.rate = rate  # tokens per character, refined with every count
        self.filled = [i for i, unit in enumerate(units) if unit]
        # Units that lengthen a stripped buffer, and what they add (the buffer's strip cuts the rest).
        self.growing = [i for i in self.filled if not units[i].isspace()]
        self.tails = [units[i].rstrip() for i in self.growing]
        # ends[k]: characters that the first k growing units add, each with its space
        self.ends = list(accumulate((len(tail) + 1 for tail in self.tails), initial=0))
        self.blank_counts: dict[str, int] = {}
        self.out: list[str] = []

    def pack(self) -> list[str]:
        buf = ""
        i = 0
        while i < len(self.units):
            if not buf:  # an empty unit leaves an empty buffer empty: skip to the next filled one
                k = bisect_left(self.filled, i)
                if k == len(self.filled):
                    break
                i = self.filled[k]
            elif not buf[0].isspace() and not buf[-1].isspace():
                first = bisect_left(self.growing, i)
                added, buf = self._grow(buf, first)
                if first + added == len(self.growing):
                    break  # everything left fits (blank units change nothing)
                self.out.append(buf)
                i = self.growing[first + added]
                buf = self._restart(self.units[i])
                i += 1
                continue
            unit = self.units[i]
            i += 1
            candidate = f"{buf} {unit}".strip() if buf else unit
            tokens = self._count(candidate)
            if tokens <= self.max_tokens:
                buf = candidate
                continue
            if buf:
                self.out.append(buf)
            buf = self._restart(unit, None if buf else tokens)
        if buf:
            self.out.append(buf)
        return self.out

    def _restart(self, unit: str, tokens: int | None = None) -> str:
        """The buffer after ``unit`` overflowed it: the unit itself, or "" once it has been split."""
        if tokens is None:
            tokens = self._count(unit)
        if tokens <= self.max_tokens and unit:
            return unit
        self.out.extend(_fit(unit, self.max_tokens, self.count_tokens, tokens))
        return ""

    def _count(self, text: str) -> int:
        if text and not text.isspace():
            return self.count_tokens(text)
        # Blank candidates repeat (a run of spaces splits into empty units): count each once.
        if text not in self.blank_counts:
            self.blank_counts[text] = self.count_tokens(text)
        return self.blank_counts[text]

    def _grow(self, buf: str, first: int) -> tuple[int, str]:
        """How many growing units from ``growing[first]`` on fit after ``buf``, and the result."""
        ends, tails = self.ends, self.tails
        lo, lo_text = 0, buf  # fits
        hi = len(tails) - first + 1  # overflows (or is one past the end)
        step, guesses = 1, 0
        while hi - lo > 1:
            if guesses < _GUESSES:  # where the tokens per character seen so far say the limit is
                guesses += 1
                budget = self.max_tokens / self.rate if self.rate > 0 else float(ends[-1])
                reach = bisect_right(ends, ends[first] + budget - len(buf)) - 1 - first
                n = min(max(reach, lo + 1), hi - 1)
            elif hi > len(tails) - first:
                n, step = min(lo + step, hi - 1), step * 2
            else:
                n = (lo + hi) // 2
            text = " ".join([buf, *tails[first : first + n]])
            tokens = self.count_tokens(text)
            if tokens:
                self.rate = tokens / len(text)
            if tokens <= self.max_tokens:
                lo, lo_text = n, text
            else:
                hi = n
        return lo, lo_text


def _merge_small(
    pieces: list[_Block], min_chars: int, budget: Callable[[tuple[str, ...]], int], count_tokens: TokenCounter
) -> list[_Block]:
    """Join a heading with no body yet to the piece after it (a heading too: an H1 directly followed
    by an H2 opens one chunk with both), and a short block to the next in its section.

    One count per piece: a merged block stops growing once it reaches ``min_chars``.
    """
    out: list[_Block] = []
    for piece in pieces:
        if out:
            prev = out[-1]
            if prev.heading or (not piece.heading and prev.heading_path == piece.heading_path
                                and len(prev.text) < min_chars):
                text = prev.text + "\n\n" + piece.text
                if count_tokens(text) <= budget(piece.heading_path):
                    out[-1] = _Block(text, piece.heading_path, heading=piece.heading)
                    continue
        out.append(piece)
    return out
