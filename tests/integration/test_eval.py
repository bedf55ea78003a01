"""``freshet eval`` end to end on a tiny BEIR set cut from msmarco-5k: real Kafka, Weaviate, workers, model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.search import DEFAULT_ALPHA
from tests.integration.conftest import REPO, Endpoints
from workers.weaviate_store import sync_client

pytestmark = pytest.mark.integration

MSMARCO = REPO.parent / "shared" / "datasets" / "msmarco-5k"
"""``shared/`` sits beside the repository checkout, locally and in CI."""


def lines(path: Path) -> list[str]:
    """Non-blank lines split at newlines only (passages hold other Unicode line breaks, as str.splitlines sees them)."""
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def tiny_beir(root: Path, *, queries: int = 8, per_query: int = 2, docs: int = 30) -> Path:
    """A BEIR directory of ``docs`` msmarco passages: the best-judged ones of ``queries`` queries, then others."""
    qrels: dict[str, dict[str, int]] = {}
    for line in lines(MSMARCO / "qrels" / "test.tsv"):
        qid, did, score = line.split("\t")
        if qid == "query-id":
            continue
        qrels.setdefault(qid, {})[did] = int(score)
    chosen = dict(list(qrels.items())[:queries])
    wanted = list(dict.fromkeys(d for judged in chosen.values()
                                for d in sorted(judged, key=lambda d: -judged[d])[:per_query]))
    corpus = [json.loads(line) for line in lines(MSMARCO / "corpus.jsonl")]
    by_id = {d["_id"]: d for d in corpus}
    picked = [by_id[d] for d in wanted] + [d for d in corpus if d["_id"] not in wanted][: docs - len(wanted)]
    ids = {d["_id"] for d in picked}
    (root / "qrels").mkdir(parents=True)
    query_lines = [line for line in lines(MSMARCO / "queries.jsonl") if json.loads(line)["_id"] in chosen]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in picked), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(line + "\n" for line in query_lines), encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{s}\n" for q, judged in chosen.items() for d, s in judged.items() if d in ids))
    return root


def eval_collections(ep: Endpoints) -> set[str]:
    client = sync_client(ep.weaviate_host, ep.http_port, ep.grpc_port)
    try:
        return {name for name in client.collections.list_all() if name.startswith("C_eval_")}
    finally:
        client.close()


def test_eval_reports_every_mode_and_the_exact_ranking_as_one_json_object(
        endpoints: Endpoints, tmp_path: Path) -> None:
    data = tiny_beir(tmp_path / "tiny")
    env = {**os.environ, "FRESHET_KAFKA_BOOTSTRAP": endpoints.bootstrap,
           "FRESHET_WEAVIATE_HOST": endpoints.weaviate_host, "FRESHET_WEAVIATE_HTTP_PORT": str(endpoints.http_port),
           "FRESHET_WEAVIATE_GRPC_PORT": str(endpoints.grpc_port), "FRESHET_HOME": str(tmp_path / "home"),
           "FRESHET_START_TIMEOUT_SECONDS": "180"}
    before = eval_collections(endpoints)
    res = subprocess.run([sys.executable, "-m", "freshet.cli", "eval", str(data), "--json"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=540, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)

    assert set(report) == {"modes", "exact", "bm25"}
    assert set(report["modes"]) == {"vector", "keyword", "hybrid"}
    for figures in [*report["modes"].values(), report["exact"]]:
        for metric in ("ndcg@10", "recall@100", "mrr@10"):
            assert 0.0 <= figures[metric] <= 1.0, (metric, figures)
    exact, vector = report["exact"], report["modes"]["vector"]
    assert exact["docs"] == 30 and exact["queries"] == 8
    assert exact["chunks"] == exact["pipeline_chunks"], "the pipeline chunked the corpus differently"
    assert abs(vector["ndcg@10"] - exact["ndcg@10"]) <= 0.02, (vector, exact)
    assert vector["recall@100"] == pytest.approx(exact["recall@100"], abs=0.02)
    assert exact["ndcg@10"] > 0.5, "the model should find judged passages among 30"
    assert report["modes"]["hybrid"]["alpha"] == DEFAULT_ALPHA
    assert eval_collections(endpoints) == before, "the evaluation's collection should be dropped"
