"""The keyword side's analyzer: the words BM25 indexes and a keyword query asks for.

Weaviate's BM25 matches the words of a property as they are tokenized, with no stemming, so
"indexing" never finds "indexed". The indexer therefore writes, beside each chunk's text and
title, an analyzed copy (:func:`analyzed`: lower case, words of two or more letters or digits,
Lucene's English stop words removed, each word reduced by the Snowball English stemmer), indexed
with whitespace tokenization, and the query worker analyzes a query the same way before asking
BM25. ``freshet eval`` computes its reference BM25 (bm25s) over the same tokens, so the two differ
only in how they score, never in what they count as a word.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

import Stemmer

#: bm25s's (and scikit-learn's) token pattern: runs of two or more word characters.
_WORD = re.compile(r"(?u)\b\w\w+\b")

#: Lucene's English stop words (the set bm25s uses for "en").
STOP_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not",
    "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was",
    "will", "with",
})

_local = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    """One Snowball stemmer per thread (a stemmer object is not thread-safe)."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


def tokens(text: str) -> list[str]:
    """The analyzed words of ``text``, in order (repeats kept: BM25 counts them)."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]
    return list(_stemmer().stemWords(words)) if words else []


def analyzed(text: str) -> str:
    """``text`` as the analyzed property holds it: its :func:`tokens` joined by spaces."""
    return " ".join(tokens(text))


@lru_cache(maxsize=4096)
def analyzed_query(text: str) -> str:
    """A keyword query, analyzed as the property was (cached: queries repeat)."""
    return analyzed(text)


def keyword_text(title: str | None, text: str) -> str:
    """What a chunk's BM25 property holds: its document's title and its own text, analyzed."""
    return analyzed(f"{title}\n{text}" if title else text)
