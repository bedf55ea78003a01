"""The HNSW benchmark's arithmetic (ops/bench/hnsw.py): recall against the exact top k and which
setting it chooses."""

from __future__ import annotations

import pytest

from ops.bench.hnsw import Row, choose, recall_at


def test_recall_counts_the_exact_top_k_found_over_all_queries() -> None:
    truth = [[1, 2, 3], [4, 5, 6]]
    assert recall_at([[3, 2, 1], [4, 5, 6]], truth, 3) == 1.0  # order within the top k does not matter
    assert recall_at([[1, 2, 9], [4, 8, 9]], truth, 3) == pytest.approx(3 / 6)
    assert recall_at([[1], [4, 5, 6]], truth, 3) == pytest.approx(4 / 6)  # fewer hits than k: missed
    assert recall_at([[1, 2, 3, 4]], [[1, 2, 9, 4]], 2) == 1.0  # only the top k of each side
    assert recall_at([], [], 10) == 1.0


def _row(efc: int, ef: int, k: int, recall: float, p50: float) -> Row:
    return Row(ef_construction=efc, max_connections=16, ef=ef, limit=k, recall=recall, p50_ms=p50, p99_ms=p50 * 2,
               searches=10, build_s=1.0)


def test_the_choice_is_the_fastest_setting_with_enough_recall_at_every_limit() -> None:
    rows = [
        _row(64, 16, 10, 0.995, 1.0), _row(64, 16, 50, 0.97, 2.0),   # fastest, but misses at 50
        _row(64, 32, 10, 0.995, 1.2), _row(64, 32, 50, 0.992, 2.2),  # the choice
        _row(64, -1, 10, 1.0, 2.0), _row(64, -1, 50, 1.0, 4.0),      # more recall, slower
        _row(128, 32, 10, 0.999, 1.3), _row(128, 32, 50, 0.999, 2.2),  # slower in sum
    ]
    best = choose(rows, 0.99)
    assert best is not None and (best.ef_construction, best.ef, best.limit) == (64, 32, 10)
    assert choose(rows, 0.9995) == rows[4]  # only dynamic ef reaches it at both limits
    assert choose(rows, 1.01) is None
