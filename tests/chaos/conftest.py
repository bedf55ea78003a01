"""Fixtures of the chaos tier: its own broker and store, the model, the scale and the report.

The tier never touches the shared local stack: a Kafka broker and a Weaviate server of its own are
started once for the session on free ports (``.freshet/chaos/services``) and stopped at the end.
Scale knobs (environment variables, read here only), with the full-scale defaults ``make chaos``
and CI use:

* ``CHAOS_EVENTS`` (5000): change events per fault scenario;
* ``CHAOS_KILLS`` (10): ``kill -9`` of the indexer in the kill scenario;
* ``CHAOS_OUTAGE_SECONDS`` (30): how long Weaviate is down and a shard READONLY;
* ``CHAOS_HOSTILE`` (10000): hostile inputs in the hostile-input scenario;
* ``CHAOS_RATE`` (50): change events published per second;
* ``CHAOS_SEED`` (20261203): the seed of every workload and of the fault timings;
* ``CHAOS_DIR`` (``.freshet/chaos``): data, logs and the report (``report.md``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.services import Services, start_services
from workers.embedding import SentenceTransformerEmbedder

REPO = Path(__file__).resolve().parents[2]
_REPORTING: list[Path] = []  # the report directory, once a scenario of this run asked for it


@dataclass(frozen=True)
class Scale:
    events: int
    kills: int
    outage_seconds: float
    hostile: int
    rate: float
    seed: int

    @classmethod
    def from_env(cls) -> Scale:
        env = os.environ
        return cls(events=int(env.get("CHAOS_EVENTS", "5000")), kills=int(env.get("CHAOS_KILLS", "10")),
                   outage_seconds=float(env.get("CHAOS_OUTAGE_SECONDS", "30")),
                   hostile=int(env.get("CHAOS_HOSTILE", "10000")), rate=float(env.get("CHAOS_RATE", "50")),
                   seed=int(env.get("CHAOS_SEED", "20261203")))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: kills and freezes services of its own (make chaos)")


@pytest.fixture(scope="session")
def scale() -> Scale:
    return Scale.from_env()


@pytest.fixture(scope="session")
def chaos_dir() -> Path:
    path = Path(os.environ.get("CHAOS_DIR", str(REPO / ".freshet" / "chaos"))).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def report_dir(chaos_dir: Path) -> Path:
    for old in (chaos_dir / "rows").glob("*.json"):
        old.unlink()
    _REPORTING.append(chaos_dir)
    return chaos_dir


@pytest.fixture(scope="session")
def services(chaos_dir: Path) -> Iterator[Services]:
    svc = start_services(chaos_dir)
    try:
        yield svc
    finally:
        svc.stack.down(["kafka", "weaviate"])


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("", device="cpu", batch_size=32)


@pytest.fixture
def live_services(services: Services) -> Services:
    """The session's broker and store, restarted first if an earlier scenario left one down."""
    services.stack.up(["kafka", "weaviate"])
    return services


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the reliability table the scenarios of this run wrote."""
    from tests.chaos import report

    if not _REPORTING:
        return
    path = _REPORTING[0]
    if (path / "rows").is_dir():
        terminalreporter.write_sep("=", "chaos tier: reliability table")
        terminalreporter.write_line(report.write(path))
        terminalreporter.write_line(f"written to {path / 'report.md'}")
