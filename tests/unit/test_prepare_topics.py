"""A worker's start waits out transient faults while it prepares its topics, up to the start timeout."""

from __future__ import annotations

import pytest

from freshet.errors import TransientError
from freshet.settings import Settings
from streams import worker
from workers import retry


def test_transient_faults_while_preparing_topics_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    faults = [TransientError("Kafka does not know topics ['t'] yet"), TransientError("broker away")]
    calls: list[str] = []
    slept: list[float] = []

    def prepare(settings: Settings, role: str) -> None:
        calls.append(role)
        if faults:
            raise faults.pop(0)

    monkeypatch.setattr(worker, "_prepare_topics", prepare)
    monkeypatch.setattr(retry.time, "sleep", slept.append)
    worker.prepare_topics(Settings(start_timeout_seconds=60), "indexer")
    assert calls == ["indexer"] * 3 and slept == [0.5, 1.0]


def test_a_fault_lasting_past_the_start_timeout_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]

    def prepare(settings: Settings, role: str) -> None:
        raise TransientError("broker away")

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    monkeypatch.setattr(worker, "_prepare_topics", prepare)
    monkeypatch.setattr(retry.time, "sleep", sleep)
    monkeypatch.setattr(retry.time, "monotonic", lambda: clock[0])
    with pytest.raises(TransientError, match="broker away"):
        worker.prepare_topics(Settings(start_timeout_seconds=10), "query")
    assert 5.0 < clock[0] <= 10.0
