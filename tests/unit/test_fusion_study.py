"""The offline fusion study (ops/bench/fusion.py): its fusion families and the margin rule."""

from __future__ import annotations

import numpy as np
import pytest

from ops.bench.fusion import Prepared, fused, meets, study, three_sigma, top


def test_three_sigma_maps_mean_plus_minus_three_sd_to_the_unit_interval() -> None:
    got = three_sigma([1.0, 2.0, 3.0])
    sd = np.std([1.0, 2.0, 3.0])
    assert got[1] == pytest.approx(0.5)
    assert got[2] == pytest.approx(0.5 + 1 / (6 * sd))
    assert three_sigma([4.0, 4.0]) == [1.0, 1.0]
    assert three_sigma([]) == []


def test_top_orders_best_first_and_keeps_only_matches_for_bm25() -> None:
    row = np.array([0.0, 2.0, 0.5, 2.0], dtype=np.float32)
    assert top(row, 3) == [1, 3, 2]
    assert top(row, 4, positive=True) == [1, 3, 2]


def test_the_families_differ_where_a_side_missed_a_chunk() -> None:
    dense = np.array([0.9, 0.8, 0.1, 0.2], dtype=np.float32)
    bm25 = np.array([0.0, 1.0, 9.0, 0.5], dtype=np.float32)
    # two candidates per side: vector {0, 1}, keyword {2, 1}
    shipped = dict(fused("relative_score", 0.5, dense, bm25, 2))
    assert shipped[0] == pytest.approx(0.5) and shipped[2] == pytest.approx(0.5)  # the other side counts 0
    filled = dict(fused("relative_filled", 0.5, dense, bm25, 2))  # min-max over {0, 1, 2}, both sides known
    assert filled[0] == pytest.approx(0.5 * 1.0 + 0.5 * 0.0)
    assert filled[1] == pytest.approx(0.5 * (0.7 / 0.8) + 0.5 * (1 / 9))
    rerank = [i for i, _ in fused("vector_rerank", 0.5, dense, bm25, 2)]
    assert sorted(rerank) == [0, 1]  # keyword's own candidates never enter
    with pytest.raises(ValueError, match="unknown fusion family"):
        fused("nope", 0.5, dense, bm25, 2)


def test_the_study_compares_each_setting_with_the_better_single_mode() -> None:
    # q1: the vector side finds d1 (relevant) first; the keyword side finds only d2 (not relevant)
    p = Prepared(name="toy", qids=["q1"], doc_ids=["d1", "d2", "d3"],
                 dense=np.array([[0.9, 0.5, 0.4]], dtype=np.float32),
                 bm25=np.array([[0.0, 5.0, 0.0]], dtype=np.float32), qrels={"q1": {"d1": 1}})
    result = study([p], candidates=3, families=["relative_score"], alphas=[0.3, 0.8])
    assert result["singles"]["toy"]["better"] == "vector"
    low, high = result["rows"]
    assert low["sets"]["toy"]["vs_better"] < 0  # keyword-heavy: d2 comes first
    assert high["sets"]["toy"]["vs_better"] == pytest.approx(0.0)
    assert not meets(low, 0.0) and meets(high, 0.0) and not meets(high, 0.01)
