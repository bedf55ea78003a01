"""Bootstrap intervals over queries (workers.relevance): what a quality figure is reported with."""

from __future__ import annotations

import random

from workers.relevance import bootstrap_interval, paired_interval, per_query


def test_the_interval_holds_the_mean_and_narrows_with_more_queries() -> None:
    rnd = random.Random(1)
    few = [rnd.random() for _ in range(40)]
    many = [rnd.random() for _ in range(4000)]
    lo, hi = bootstrap_interval(few)
    assert lo < sum(few) / len(few) < hi
    lo2, hi2 = bootstrap_interval(many, resamples=300)
    assert hi2 - lo2 < (hi - lo) / 4
    assert 0.45 < lo2 < 0.5 < hi2 < 0.55  # uniform values: the mean is 0.5


def test_a_constant_has_no_spread_and_the_same_seed_gives_the_same_interval() -> None:
    assert bootstrap_interval([0.7] * 30) == (0.7, 0.7)
    values = [i / 10 for i in range(10)]
    assert bootstrap_interval(values) == bootstrap_interval(values)
    assert bootstrap_interval([]) == (0.0, 0.0)


def test_the_paired_interval_sees_a_small_steady_gain_that_separate_intervals_hide() -> None:
    rnd = random.Random(2)
    base = {f"q{i}": rnd.random() for i in range(50)}
    better = {q: v + 0.02 for q, v in base.items()}
    lo, hi = paired_interval(better, base)
    assert 0.0199 < lo <= hi < 0.0201
    lo_a, hi_a = bootstrap_interval(list(base.values()))
    lo_b, _ = bootstrap_interval(list(better.values()))
    assert lo_b < hi_a  # the separate intervals overlap


def test_per_query_gives_every_judged_query_a_figure() -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 2}}
    out = per_query(qrels, {"q1": ["d1", "d3"]})
    assert out["q1"] == 1.0 and out["q2"] == 0.0
