"""Observability against the real services and a real browser: under a steady stream of real
edits, /metrics fills, the metrics topic carries snapshots, the probes set the quality gauges, and
headless Chromium renders every panel of the built-in dashboard with data (and saves a screenshot)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from freshet.client import DocumentPublisher
from freshet.publishing import load_events
from freshet.settings import Settings
from ops.install import ensure_chromium
from ops.stack import Stack, drop_pipeline
from schemas.change import ChangeEvent
from schemas.metrics import MetricsSnapshot
from tests.integration.conftest import REPO, Endpoints, make_settings
from tests.integration.helpers import publish_and_wait, read_topic, send_raw

pytestmark = pytest.mark.integration

EDITS = REPO.parent / "shared" / "datasets" / "fastapi-docs-edits.jsonl"
DOCS = 12


def golden_set(path: Path, docs: list[ChangeEvent]) -> Path:
    """Each document's first heading as a query, judged relevant to that document."""
    (path / "qrels").mkdir(parents=True)
    queries, qrels = [], ["query-id\tcorpus-id\tscore"]
    for i, ev in enumerate(docs):
        heading = next((ln.lstrip("# ").strip() for ln in (ev.content or "").splitlines() if ln.startswith("#")), "")
        queries.append(json.dumps({"_id": f"q{i}", "text": heading or ev.doc_id}))
        qrels.append(f"q{i}\t{ev.doc_id}\t1")
    (path / "queries.jsonl").write_text("\n".join(queries) + "\n")
    (path / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n")
    (path / "corpus.jsonl").write_text("".join(json.dumps({"_id": ev.doc_id}) + "\n" for ev in docs))
    return path


@pytest.fixture(scope="module")
def observed(endpoints: Endpoints, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    events = load_events(EDITS)
    initial = [ev for ev in events if ev.version == 1][:DOCS]
    ids = {ev.doc_id for ev in initial}
    edits = [ev for ev in events if ev.version > 1 and ev.doc_id in ids][:40]
    home = tmp_path_factory.mktemp("observed")
    base = make_settings(endpoints, home)
    settings = Settings(**{**base.model_dump(), "metrics_interval_seconds": 1.0, "probe_interval_seconds": 1.0,
                           "quality_interval_seconds": 4.0, "golden_dir": str(golden_set(home / "golden", initial))})
    stack = Stack(settings)
    try:
        stack.up(["indexer", "query"])
        publish_and_wait(settings, initial, timeout=300)
        send_raw(settings, settings.topic_changes, b"broken", b"{not json")  # one dead letter for its panel
        publisher = DocumentPublisher(settings.bootstrap_servers, settings.topic_changes)

        def stream_edits() -> None:  # a steady stream: one real edit every half second
            for ev in edits:
                publisher.publish(ev)
                time.sleep(0.5)
            publisher.flush(30)

        streamer = threading.Thread(target=stream_edits)
        streamer.start()
        yield settings
        streamer.join()
        publisher.close()
    finally:
        stack.down(["indexer", "query"])
        drop_pipeline(settings)


def scrape(settings: Settings, role: str) -> dict[str, float]:
    text = httpx.get(settings.worker_url(role, "/metrics"), timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z0-9_:]+(?:\{[^}]*\})?) ([0-9.e+-]+|NaN)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def wait_for(check: object, what: str, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def test_metrics_fill_under_a_stream_of_edits(observed: Settings) -> None:
    wait_for(lambda: scrape(observed, "indexer").get("freshet_freshness_seconds_count", 0) >= DOCS + 5,
             "the freshness histogram to fill")
    wait_for(lambda: scrape(observed, "query").get("freshet_searchable_freshness_seconds_count", 0) >= 3,
             "the searchability probe to find new chunks")
    # The probe runs every 4 s from the query worker's start, so its first figure may come from an index
    # still empty (0.0, truly); wait for one taken after the documents were indexed.
    wait_for(lambda: scrape(observed, "query").get('freshet_golden_ndcg_at_10{mode="hybrid"}', 0) > 0,
             "the golden-set probe over the indexed documents")
    ix, q = scrape(observed, "indexer"), scrape(observed, "query")
    assert ix["freshet_chunks_embedded_total"] > 0 and ix["freshet_events_applied_total"] >= DOCS
    assert ix['freshet_dead_lettered_total{reason="invalid_json",worker="indexer"}'] == 1
    assert 'freshet_consumer_lag_records{partition="0"}' in ix
    assert 0 < q['freshet_golden_ndcg_at_10{mode="hybrid"}'] <= 1
    assert 0 <= q["freshet_searchability_share"] <= 1 and q["freshet_index_documents"] == DOCS
    assert q["freshet_ann_recall_at_10"] > 0.5


def test_the_metrics_topic_carries_snapshots_of_both_workers(observed: Settings) -> None:
    records = read_topic(observed, observed.topic_metrics, count=10, timeout=60)
    snaps = [MetricsSnapshot.model_validate_json(r.value) for r in records]
    assert {s.worker for s in snaps} == {"indexer", "query"}
    indexer = [s for s in snaps if s.worker == "indexer"]
    assert any(s.freshness_seconds is not None for s in indexer)
    assert any(s.lag_records for s in indexer)


def test_the_dashboard_renders_every_panel_in_chromium(observed: Settings, tmp_path: Path) -> None:
    wait_for(lambda: "freshet_golden_ndcg_at_10" in httpx.get(observed.worker_url("query", "/metrics")).text
             and scrape(observed, "query").get("freshet_searchable_freshness_seconds_count", 0) >= 3,
             "the probes before the screenshot")
    time.sleep(5)  # a few more snapshots, so every line has points
    chromium = ensure_chromium()
    url = observed.worker_url("query", "/dashboard")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    assert 'data-ready="1"' in dom, dom[:2000]
    panels = dict(re.findall(r'id="p-([a-z]+)"[^>]*data-points="(\d+)"', dom))
    assert set(panels) == {"freshness", "lag", "throughput", "dead", "faults", "latency", "quality"}, panels
    assert all(int(n) > 0 for n in panels.values()), f"panels without data: {panels}"
    assert dom.count('class="series"') >= 10
    shot = tmp_path / "dashboard.png"
    subprocess.run([*flags, "--hide-scrollbars", "--window-size=1400,1000", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 20_000
    if os.environ.get("FRESHET_SCREENSHOT_TO"):
        shutil.copy(shot, os.environ["FRESHET_SCREENSHOT_TO"])
