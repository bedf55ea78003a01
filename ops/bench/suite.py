"""``freshet bench`` (``make bench``): every suite in one run, one table, each figure beside its baseline.

Runs, in this order and on the running stack's Kafka and Weaviate (started if need be), each on a
pipeline of its own: ``bulk`` (pipeline against the model's own encode, and each worker's peak
memory), ``edits`` (text embedded over a real edit history, against the new paragraphs, LangChain's
``index()`` and whole-document re-embedding), ``freshness`` (event time to searchable at steady edit
rates), ``query`` (request-reply latency at 5 requests/s and throughput with 8 clients, against the
same searches made directly) and ``hnsw`` (recall against latency per index setting). Baselines are
measured in the same run on the same machine, so the ratios hold on a noisy machine. ``--json``
prints one object whose keys are listed in :data:`KEYS`; ``--only`` runs some suites.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from freshet.errors import FreshetError
from freshet.settings import Settings

SUITES = ("bulk", "edits", "freshness", "query", "hnsw")
FRESHNESS_RATE = 10.0
"""The rate whose freshness figures head the report (the target's)."""
QUERY_RATE = 5.0
KEYS = {
    "bulk": ("pipeline_chunks_per_s", "encode_chunks_per_s", "chunks"),
    "edits": ("chars_embedded", "new_paragraph_chars", "langchain_chars", "whole_document_chars"),
    "freshness": ("rate_per_s", "p50_s", "p95_s", "p99_s", "max_sustainable_rate_per_s"),
    "query": ("p50_ms", "p99_ms", "direct_p50_ms", "direct_p99_ms", "clients8_per_s", "direct_clients8_per_s"),
    "memory": ("indexer_peak_rss_mb", "query_peak_rss_mb"),
}
"""The figures of each section of ``--json`` (``hnsw`` is the curve: one row per setting)."""


def _bulk(base: Settings) -> dict[str, Any]:
    from dataclasses import asdict

    from ops.bench import bulk

    b = bulk.run(base, bulk.DEFAULT_CORPUS, 5000)
    return asdict(b)


def _edits(base: Settings) -> dict[str, Any]:
    from ops.bench import edits, freshness

    r = edits.run(base, freshness.DEFAULT_HISTORY)
    return {"chars_embedded": r["freshet"]["chars_embedded"], "new_paragraph_chars": r["new_paragraph_chars"],
            "langchain_chars": r["langchain"]["1000,200"]["chars"],
            "langchain_500_50_chars": r["langchain"]["500,50"]["chars"],
            "whole_document_chars": r["full_reembed_500_50"]["chars"],
            "verify_ok": r["verify"]["ok"], "fresh_load_equal": r["fresh_load_equal"]["ok"]}


def _freshness(base: Settings) -> dict[str, Any]:
    from ops.bench import freshness

    r = freshness.run(base, freshness.DEFAULT_HISTORY)
    return freshness.headline(r, FRESHNESS_RATE) | {"steps": r["steps"], "not_found": r["not_found"]}


def _query(base: Settings) -> dict[str, Any]:
    from ops.bench import query

    r = query.run(base, query.DEFAULT_DATASET, rate=QUERY_RATE, clients=8, requests=400, modes=("hybrid",),
                  docs=2000, top_k=10, alpha=base.hybrid_alpha, warmup=20, keep=False)
    m = r["modes"]["hybrid"]
    rate, clients = m["rate"], m["clients"]
    return {"p50_ms": rate["kafka"]["p50_ms"], "p99_ms": rate["kafka"]["p99_ms"],
            "direct_p50_ms": rate["direct"]["p50_ms"], "direct_p99_ms": rate["direct"]["p99_ms"],
            "clients8_per_s": clients["kafka"]["throughput_rps"],
            "direct_clients8_per_s": clients["direct"]["throughput_rps"], "rate_per_s": QUERY_RATE}


def _hnsw(base: Settings) -> list[dict[str, Any]]:
    from ops.bench import hnsw

    rows: list[dict[str, Any]] = hnsw.run(base, hnsw.DEFAULT_DATASETS)["rows"]
    return rows


RUNNERS: dict[str, Callable[[Settings], Any]] = {"bulk": _bulk, "edits": _edits, "freshness": _freshness,
                                                 "query": _query, "hnsw": _hnsw}


def run(base: Settings, suites: Sequence[str] = SUITES) -> dict[str, Any]:
    from ops.stack import Stack

    Stack(base).up(["kafka", "weaviate"])
    return collect(base, suites, RUNNERS)


def collect(base: Settings, suites: Sequence[str], runners: dict[str, Callable[[Settings], Any]]) -> dict[str, Any]:
    """Each suite's figures under its name (each worker's peak memory of the bulk run under ``memory``)."""
    out: dict[str, Any] = {"cores": os.cpu_count(), "seconds": {}}
    for name in suites:
        click.echo(f"freshet bench: {name} ...", err=True)
        started = time.monotonic()
        result = runners[name](base)
        out["seconds"][name] = round(time.monotonic() - started)
        if name == "bulk":
            out["memory"] = {"indexer_peak_rss_mb": result.pop("indexer_peak_rss_mb"),
                             "query_peak_rss_mb": result.pop("query_peak_rss_mb")}
        out[name] = result
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def table(r: dict[str, Any]) -> str:
    """One row per figure: the figure, its baseline from the same run, and their ratio."""
    rows: list[tuple[str, str, str, str]] = []
    if "bulk" in r:
        b = r["bulk"]
        rows.append(("bulk: pipeline chunks/s", f"{b['pipeline_chunks_per_s']}",
                     f"model encode {b['encode_chunks_per_s']}", _ratio(b["pipeline_chunks_per_s"],
                                                                        b["encode_chunks_per_s"])))
        if "ceiling_ratio" in b:
            others = sum(v for k, v in b["cpu_s"].items() if k not in ("indexer", "encode"))
            rows.append(("bulk: highest ratio the cores allow", f"{b['ceiling_ratio']}",
                         f"other processes' CPU {others:.0f} s", "-"))
    if "memory" in r:
        m = r["memory"]
        rows.append(("memory: peak RSS MB", f"indexer {m['indexer_peak_rss_mb']}", f"query {m['query_peak_rss_mb']}",
                     "-"))
    if "edits" in r:
        e = r["edits"]
        rows.append(("edits: chars embedded", f"{e['chars_embedded']:,}",
                     f"new paragraphs {e['new_paragraph_chars']:,}", _ratio(e["chars_embedded"],
                                                                            e["new_paragraph_chars"])))
        rows.append(("edits: LangChain index() (1000, 200)", f"{e['langchain_chars']:,}", "new paragraphs",
                     _ratio(e["langchain_chars"], e["new_paragraph_chars"])))
        rows.append(("edits: whole-document re-embed", f"{e['whole_document_chars']:,}", "new paragraphs",
                     _ratio(e["whole_document_chars"], e["new_paragraph_chars"])))
    if "freshness" in r:
        f = r["freshness"]
        rows.append((f"freshness at {f['rate_per_s']:g} edits/s: p50 / p95 / p99 s",
                     f"{f['p50_s']} / {f['p95_s']} / {f['p99_s']}", "target p99 < 1 s", "-"))
        rows.append(("freshness: highest sustained rate", f"{f['max_sustainable_rate_per_s']:g} edits/s", "-", "-"))
    if "query" in r:
        q = r["query"]
        rows.append((f"query at {q['rate_per_s']:g} req/s: p50 / p99 ms", f"{q['p50_ms']} / {q['p99_ms']}",
                     f"direct {q['direct_p50_ms']} / {q['direct_p99_ms']}",
                     f"+{q['p50_ms'] - q['direct_p50_ms']:.1f} ms p50"))
        rows.append(("query: 8 clients, req/s", f"{q['clients8_per_s']}", f"direct {q['direct_clients8_per_s']}",
                     _ratio(q["clients8_per_s"], q["direct_clients8_per_s"])))
    if "hnsw" in r:
        from ops.bench.hnsw import Row, choose

        best = choose([Row(**x) for x in r["hnsw"]], 0.99)
        if best is not None:
            rows.append(("hnsw: chosen (recall@k >= 0.99)", f"efC {best.ef_construction}, M {best.max_connections}, "
                         f"ef {'dynamic' if best.ef < 0 else best.ef}", f"recall@{best.limit} {best.recall:.4f}",
                         f"p50 {best.p50_ms} ms"))
    width = max((len(x[0]) for x in rows), default=10)
    lines = [f"freshet bench ({r['cores']} cores; load average {' '.join(map(str, r['load_average']))}; "
             f"seconds per suite {r['seconds']})", f"{'figure':<{width}}  {'measured':<28}  {'baseline':<28}  ratio"]
    lines += [f"{a:<{width}}  {b:<28}  {c:<28}  {d}" for a, b, c, d in rows]
    return "\n".join(lines)


def main(settings: Settings | None, only: Sequence[str], as_json: bool, out: Path | None) -> None:
    try:
        result = run(settings or Settings(), only or SUITES)
    except FreshetError as exc:
        raise click.ClickException(str(exc)) from exc
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if as_json:
        json.dump(result, sys.stdout, indent=2)
        click.echo()
    else:
        click.echo(table(result))
