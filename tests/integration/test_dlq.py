"""freshet dlq against the real services: bad events are dead-lettered by a running indexer, listed
by reason, shown, fixed by a setting and replayed; a second replay publishes nothing, a forced one
is skipped by the version rules, and a stale replayed version never overwrites the applied one."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from freshet.cli import dlq
from freshet.settings import Settings
from ops.stack import Stack, drop_pipeline
from schemas.change import ChangeEvent
from schemas.deadletter import REPLAY_DEAD_LETTER, REPLAY_OF
from tests.integration.conftest import make_settings
from tests.integration.helpers import publish_and_wait, read_topic, records_now, send_raw, stored

pytestmark = pytest.mark.integration

CAP = 2_000  # FRESHET_MAX_DOCUMENT_BYTES of the first indexer; the second one's is the default test cap


@pytest.fixture
def capped(endpoints, tmp_path: Path) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    """Settings with a low document cap and dead letters cut at 4 KiB; the test starts the indexer."""
    base = make_settings(endpoints, tmp_path)
    settings = Settings(**{**base.model_dump(), "max_document_bytes": CAP, "dead_letter_max_bytes": 4_096})
    yield settings
    Stack(settings).down(["indexer"])
    drop_pipeline(settings)


def _upsert(doc_id: str, version: int, size: int) -> bytes:
    body = f"# {doc_id} v{version}\n\n" + ("word " * (size // 5))
    return json.dumps({"doc_id": doc_id, "op": "upsert", "version": version, "content": body}).encode()


def _cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(dlq, list(args), obj=settings)
    assert result.exit_code == 0, f"dlq {' '.join(args)}: {result.output}"
    return result.stdout


def _until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def _stale_skipped(settings: Settings) -> int:
    return int(httpx.get(f"http://127.0.0.1:{settings.indexer_web_port}/stats", timeout=5).json()["stale_skipped"])


def test_dead_letters_are_listed_fixed_and_replayed_once(capped: Settings) -> None:
    s = capped
    Stack(s).up(["indexer"])
    send_raw(s, s.topic_changes, b"bad.md", b'{"doc_id": "bad.md", "op": "upsert", "version": 1')
    send_raw(s, s.topic_changes, b"mc.md", b'{"doc_id": "mc.md", "op": "upsert", "version": 1}')
    send_raw(s, s.topic_changes, b"big.md", _upsert("big.md", 1, 3_000), [("trace", b"t-1")])
    send_raw(s, s.topic_changes, b"huge.md", _upsert("huge.md", 1, 6_000))  # its dead letter is cut at 4 KiB
    send_raw(s, s.topic_changes, b"s.md", _upsert("s.md", 1, 3_000))  # oversized, then superseded by v2
    publish_and_wait(s, [ChangeEvent(doc_id="s.md", op="upsert", version=2, content="# s.md v2\n\nApplied."),
                         ChangeEvent(doc_id="good.md", op="upsert", version=1, content="# Good\n\nIndexed.")])
    read_topic(s, s.topic_dead_letter, count=5, timeout=30)

    groups = {(g["reason"], g["source_topic"]): g for g in json.loads(_cli(s, "list", "--json"))}
    assert {k: g["count"] for k, g in groups.items()} == {
        ("oversized", s.topic_changes): 3, ("invalid_json", s.topic_changes): 1,
        ("missing_content", s.topic_changes): 1}
    oversized = groups["oversized", s.topic_changes]
    assert oversized["truncated"] == 1 and "FRESHET_MAX_DOCUMENT_BYTES" in oversized["error_sample"]
    letters = {r.key.decode(): f"{r.partition}:{r.offset}" for r in records_now(s, s.topic_dead_letter)}
    huge = _cli(s, "show", letters["huge.md"])
    assert "truncated  value " in huge and "not JSON, cut" in huge
    big = _cli(s, "show", letters["big.md"])
    assert "trace: t-1" in big and '"version": 1' in big and "truncated  no" in big

    changes_before = len(records_now(s, s.topic_changes))
    assert _cli(s, "replay", "--dry-run").splitlines()[-1] == (
        "dlq replay: would replay 4 of 5 matching; skipped: 1 truncated")
    assert len(records_now(s, s.topic_changes)) == changes_before

    # the fix: the cap raised on a restarted indexer
    Stack(s).down(["indexer"])
    raised = Settings(**{**s.model_dump(), "max_document_bytes": 200_000})
    Stack(raised).up(["indexer"])
    assert _cli(raised, "replay").splitlines()[-1] == "dlq replay: replayed 4 of 5 matching; skipped: 1 truncated"
    big_objects = _until(lambda: stored(raised, "big.md"), "big.md applied from its replay")
    assert {o["version"] for o in big_objects.values()} == {1}
    _until(lambda: _stale_skipped(raised) >= 1, "the replayed s.md v1 skipped as stale")
    assert {o["version"] for o in stored(raised, "s.md").values()} == {2}
    # invalid JSON and a missing content stay bad: dead-lettered again, naming their origin
    again = read_topic(s, s.topic_dead_letter, count=2, timeout=30, where=lambda r: REPLAY_OF in dict(r.headers))
    assert sorted(r.key for r in again) == [b"bad.md", b"mc.md"]
    replays = records_now(s, s.topic_changes, where=lambda r: REPLAY_OF in dict(r.headers))
    assert sorted(r.key for r in replays) == [b"bad.md", b"big.md", b"mc.md", b"s.md"]
    [big_replay] = [r for r in replays if r.key == b"big.md"]
    head = dict(big_replay.headers)
    assert head["trace"] == b"t-1" and head[REPLAY_DEAD_LETTER] == f"{s.topic_dead_letter}:{letters['big.md']}".encode()
    assert not [k for k in head if k.startswith("freshet.") and k not in (REPLAY_OF, REPLAY_DEAD_LETTER)]

    # replaying again publishes nothing, the dead letters of replays included
    changes_before = len(records_now(s, s.topic_changes))
    assert _cli(raised, "replay").splitlines()[-1] == (
        "dlq replay: replayed 0 of 7 matching; skipped: 6 already replayed, 1 truncated")
    assert len(records_now(s, s.topic_changes)) == changes_before
    # sent again all the same, the version rules make it a no-op
    stale = _stale_skipped(raised)
    assert _cli(raised, "replay", "--again", "--reason", "oversized").splitlines()[-1] == (
        "dlq replay: replayed 2 of 3 matching; skipped: 1 truncated")
    _until(lambda: _stale_skipped(raised) >= stale + 2, "both re-sent replays skipped as stale")
    assert stored(raised, "big.md") == big_objects
    assert {o["version"] for o in stored(raised, "s.md").values()} == {2}
