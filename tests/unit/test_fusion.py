"""Hybrid fusion (workers/fusion.py): scores in [0, 1] that order the hits, each side's raw score kept."""

from __future__ import annotations

import pytest

from workers.fusion import RRF_K, Candidate, fuse, normalized


def _c(*pairs: tuple[str, float]) -> list[Candidate]:
    return [Candidate(i, s) for i, s in pairs]


def test_min_max_normalization() -> None:
    assert normalized([3.0, 1.0, 2.0]) == [1.0, 0.0, 0.5]
    assert normalized([0.7]) == [1.0]
    assert normalized([0.4, 0.4]) == [1.0, 1.0]
    assert normalized([]) == []


def test_relative_score_combines_the_normalized_sides() -> None:
    vector = _c(("a", 0.9), ("b", 0.7), ("c", 0.5))
    keyword = _c(("c", 12.0), ("d", 8.0), ("a", 4.0))
    hits = fuse(vector, keyword, alpha=0.75, fusion="relative_score", limit=10)
    got = {h.id: h.score for h in hits}
    assert got == pytest.approx({"a": 0.75, "b": 0.375, "c": 0.25, "d": 0.125})
    assert [h.id for h in hits] == ["a", "b", "c", "d"]
    a = hits[0]
    assert (a.vector_score, a.keyword_score) == (0.9, 4.0)
    assert next(h for h in hits if h.id == "b").keyword_score is None
    assert next(h for h in hits if h.id == "d").vector_score is None


def test_alpha_moves_the_order() -> None:
    vector = _c(("a", 0.9), ("b", 0.1))
    keyword = _c(("b", 9.0), ("a", 1.0))
    assert fuse(vector, keyword, alpha=0.9, fusion="relative_score", limit=2)[0].id == "a"
    assert fuse(vector, keyword, alpha=0.1, fusion="relative_score", limit=2)[0].id == "b"


def test_ranked_fusion_is_scaled_to_one_for_first_on_both_sides() -> None:
    vector = _c(("a", 0.9), ("b", 0.8))
    keyword = _c(("a", 5.0), ("c", 3.0))
    hits = fuse(vector, keyword, alpha=0.5, fusion="ranked", limit=3)
    assert hits[0].id == "a" and hits[0].score == pytest.approx(1.0)
    b = next(h for h in hits if h.id == "b")
    assert b.score == pytest.approx((RRF_K + 1) * 0.5 / (RRF_K + 2))
    assert all(0.0 <= h.score <= 1.0 for h in hits)


def test_ties_are_broken_by_the_sides_scores_then_the_id() -> None:
    vector = _c(("x", 0.8), ("y", 0.8))  # equal: both normalize to 1
    hits = fuse(vector, [], alpha=1.0, fusion="relative_score", limit=5)
    assert [h.id for h in hits] == ["x", "y"]
    vector = _c(("y", 0.81), ("x", 0.8))
    keyword = _c(("x", 3.0), ("y", 3.0))
    hits = fuse(vector, keyword, alpha=0.0, fusion="relative_score", limit=5)
    assert [h.id for h in hits] == ["y", "x"]  # equal keyword side: the better vector score first


def test_limit_and_unknown_fusion() -> None:
    vector = _c(*((f"v{i}", 1.0 - i / 100) for i in range(20)))
    assert len(fuse(vector, [], alpha=0.5, fusion="ranked", limit=7)) == 7
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse(vector, [], alpha=0.5, fusion="rrf", limit=3)
