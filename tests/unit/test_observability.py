"""The Grafana dashboard, the Prometheus config and the metrics reference agree with the declared metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from workers import metrics

ROOT = Path(__file__).resolve().parents[2]


def declared() -> set[str]:
    out = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            out.add(value._name + ("_total" if type(value).__name__ == "Counter" else ""))
    return out


def test_the_grafana_dashboard_queries_declared_metrics() -> None:
    dash = json.loads((ROOT / "ops" / "grafana" / "dashboards" / "freshet.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {re.sub(r"_bucket$", "", m) for e in exprs for m in re.findall(r"freshet_[a-z0-9_]+", e)}
    assert used and used <= declared(), used - declared()


def test_the_metrics_reference_documents_every_metric() -> None:
    reference = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    missing = sorted(m for m in declared() if f"`{m}`" not in reference)
    assert not missing, f"docs/metrics.md lacks {missing}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"\]\(docs/metrics\.md(#[^)]*)?\)", readme), "README.md does not link docs/metrics.md"


def test_prometheus_scrapes_both_workers_on_their_ports() -> None:
    prom = (ROOT / "ops" / "prometheus" / "prometheus.yml").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    for target in ("indexer:6066", "query:6067"):
        assert target in prom
        assert f':{target.split(":")[1]}:{target.split(":")[1]}"' in compose
