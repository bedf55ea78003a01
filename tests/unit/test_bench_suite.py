"""``freshet bench``'s report (ops/bench/suite.py): every key the issue names, and one table."""

from __future__ import annotations

from typing import Any

from freshet.settings import Settings
from ops.bench.suite import KEYS, SUITES, collect, table

FIGURES: dict[str, Any] = {
    "bulk": {"pipeline_chunks_per_s": 30.5, "encode_chunks_per_s": 53.5, "chunks": 5018, "ratio": 0.57,
             "indexer_peak_rss_mb": 1270.5, "query_peak_rss_mb": 818.1},
    "edits": {"chars_embedded": 2_250_000, "new_paragraph_chars": 1_690_000, "langchain_chars": 4_900_000,
              "whole_document_chars": 8_000_000},
    "freshness": {"rate_per_s": 10.0, "p50_s": 0.8, "p95_s": 1.5, "p99_s": 2.0, "max_sustainable_rate_per_s": 5.0},
    "query": {"p50_ms": 30.0, "p99_ms": 60.0, "direct_p50_ms": 25.0, "direct_p99_ms": 40.0, "clients8_per_s": 50.0,
              "direct_clients8_per_s": 45.0, "rate_per_s": 5.0},
    "hnsw": [{"ef_construction": 128, "max_connections": 32, "ef": 16, "limit": 10, "recall": 0.995,
              "p50_ms": 1.2, "p99_ms": 2.0, "searches": 415, "build_s": 4.8}],
}


def test_every_key_of_the_json_report_is_there_and_the_table_shows_each_suite() -> None:
    runners = {name: (lambda _s, name=name: dict(FIGURES[name]) if name != "hnsw" else list(FIGURES[name]))
               for name in SUITES}
    result = collect(Settings(), SUITES, runners)
    for section, keys in KEYS.items():
        assert all(k in result[section] for k in keys), (section, result[section])
    assert isinstance(result["hnsw"], list) and result["hnsw"][0]["recall"] == 0.995
    assert "indexer_peak_rss_mb" not in result["bulk"], "memory is its own section"
    result["load_average"] = [1.0, 1.0, 1.0]
    lines = {line.split("  ")[0]: line.split() for line in table(result).splitlines()[2:]}
    assert "30.5" in lines["bulk: pipeline chunks/s"] and "0.57x" in lines["bulk: pipeline chunks/s"]
    assert lines["query at 5 req/s: p50 / p99 ms"][-3:] == ["+5.0", "ms", "p50"]
    assert "1.33x" in lines["edits: chars embedded"]
    hnsw = lines["hnsw: chosen (recall@k >= 0.99)"]
    assert hnsw[hnsw.index("ef") + 1] == "16"
