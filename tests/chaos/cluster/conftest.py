"""Fixtures of the cluster scenarios (``make chaos-cluster``): the cluster, started once, and the report.

The scenarios run only when ``CHAOS_CLUSTER=1`` (``make chaos-cluster`` sets it), so ``make chaos``,
which collects all of ``tests/chaos``, skips them; ``.ci/run`` runs them after it with
``make chaos-cluster`` at a CI scale (``CHAOS_EVENTS=2000 CHAOS_KILLS=4``). The cluster and its workers live under
``<CHAOS_DIR>/cluster`` (default ``.freshet/chaos/cluster``); the reliability table of these
scenarios is written to ``<CHAOS_DIR>/cluster/report.md``, apart from the single-node tier's.
The scale knobs are the tier's (``CHAOS_EVENTS``, ``CHAOS_KILLS``, ``CHAOS_OUTAGE_SECONDS``,
``CHAOS_RATE``, ``CHAOS_SEED``; see ``tests/chaos/conftest.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.chaos import report
from tests.chaos.cluster.nodes import ClusterNodes, start_nodes, stop_everything

log = structlog.get_logger(__name__)

OPT_IN = "CHAOS_CLUSTER"
_REPORTED: list[Path] = []

opted_in = pytest.mark.skipif(os.environ.get(OPT_IN) != "1",
                              reason=f"the cluster scenarios run with `make chaos-cluster` ({OPT_IN}=1)")


@pytest.fixture(scope="session")
def cluster_dir(chaos_dir: Path) -> Path:
    path = chaos_dir / "cluster"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def cluster_report_dir(cluster_dir: Path) -> Path:
    for old in (cluster_dir / "rows").glob("*.json"):
        old.unlink()
    _REPORTED.append(cluster_dir)
    return cluster_dir


@pytest.fixture(scope="session")
def cluster(cluster_dir: Path) -> Iterator[ClusterNodes]:
    """3 brokers and 3 Weaviate nodes, once for the session; everything under the cluster dir is
    stopped at the end, whatever happened (a scenario's workers too)."""
    started = time.monotonic()
    try:
        nodes = start_nodes(cluster_dir)
        log.info("chaos_cluster_up", seconds=round(time.monotonic() - started, 1),
                 bootstrap=nodes.settings.bootstrap_servers)
        (cluster_dir / "nodes-start-seconds").write_text(f"{time.monotonic() - started:.1f}\n")
        yield nodes
    finally:
        stopped = stop_everything(cluster_dir)
        log.info("chaos_cluster_down", stopped=stopped)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the reliability table of the cluster scenarios of this run."""
    if not _REPORTED or not (_REPORTED[0] / "rows").is_dir():
        return
    terminalreporter.write_sep("=", "chaos tier, cluster scenarios: reliability table")
    terminalreporter.write_line(report.write(_REPORTED[0]))
    terminalreporter.write_line(f"written to {_REPORTED[0] / 'report.md'}")
