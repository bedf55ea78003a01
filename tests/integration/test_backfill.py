"""`freshet backfill` against a real pipeline: a directory indexed, changed, pruned and replayed, an
interrupted run resumed, and a JSON-lines file with a version field."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from freshet.backfill import Options, checkpoint_path, run_backfill
from freshet.cli import main
from freshet.client import SearchClient
from freshet.settings import Settings
from tests.integration.helpers import records_now, stored
from workers.backfill_plan import SOURCE_FIELD

pytestmark = pytest.mark.integration

OTTERS = "# Sea otters\n\nSea otters hold hands while they sleep so that they do not drift apart.\n"
KAFKA = "# Stream processing\n\nKafka stores streams of records in partitions; consumers track offsets.\n"
HERONS = "Grey herons stand still in shallow water for a long time, then spear fish with their beaks.\n"
T0 = 1_700_000_000_000_000  # microseconds: the version unit


def write(root: Path, rel: str, text: str, mtime_us: int) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(mtime_us * 1000, mtime_us * 1000))


def events_of(settings: Settings, prefix: str) -> list[str]:
    """The doc_id (or 'delete doc_id') of every record of the changes topic under ``prefix``."""
    out = []
    for r in records_now(settings, settings.topic_changes, where=lambda r: r.key.decode().startswith(prefix)):
        ev = json.loads(r.value)
        out.append(ev["doc_id"] if ev["op"] == "upsert" else f"delete {ev['doc_id']}")
    return out


def test_a_directory_is_indexed_then_only_its_changes_are_published(pipeline: Settings, tmp_path: Path) -> None:
    root = tmp_path / "kb"
    write(root, "otters.md", OTTERS, T0)
    write(root, "kafka.md", KAFKA, T0 + 1)
    write(root, "birds/herons.txt", HERONS, T0 + 2)
    first = run_backfill(pipeline, root, Options(prefix="kb/", wait=True, timeout=120))
    assert (first.published, first.unchanged, first.deleted, first.errors) == (3, 0, 0, 0)
    client = SearchClient(pipeline.bootstrap_servers, request_topic=pipeline.topic_requests,
                          reply_topic=pipeline.topic_replies, timeout=60)
    try:
        reply = client.search("which bird spears fish standing in water", mode="hybrid", top_k=3)
    finally:
        client.close()
    assert reply.status == "ok" and reply.hits[0].doc_id == "kb/birds/herons.txt", reply
    assert {p["version"] for p in stored(pipeline, "kb/otters.md").values()} == {T0}
    assert json.loads(next(iter(stored(pipeline, "kb/otters.md").values()))["metadata_json"]) == {
        SOURCE_FIELD: str(root)}

    write(root, "otters.md", OTTERS + "\n## Diet\n\nThey crack clams open with stones.\n", T0 + 10)
    (root / "kafka.md").unlink()
    write(root, "new.md", "# New\n\nA page written after the first backfill.\n", T0 + 11)
    second = run_backfill(pipeline, root, Options(prefix="kb/", delete_missing=True, wait=True, timeout=120))
    assert (second.published, second.unchanged, second.deleted, second.errors) == (2, 1, 1, 0)
    assert stored(pipeline, "kb/kafka.md") == {}
    assert max(p["version"] for p in stored(pipeline, "kb/otters.md").values()) == T0 + 10  # kept chunks keep theirs
    assert any("clams" in p["text"] for p in stored(pipeline, "kb/otters.md").values())
    assert stored(pipeline, "kb/new.md")
    assert sorted(events_of(pipeline, "kb/")) == sorted(
        ["kb/otters.md", "kb/kafka.md", "kb/birds/herons.txt", "kb/otters.md", "kb/new.md", "delete kb/kafka.md"])

    res = CliRunner().invoke(main, ["backfill", str(root), "--prefix", "kb/", "--delete-missing"],
                             env={**os.environ, **pipeline.as_env()})
    assert res.exit_code == 0, res.output
    assert "backfill: 0 published, 3 unchanged skipped, 0 deleted, 0 errors" in res.output
    assert len(events_of(pipeline, "kb/")) == 6


def test_an_interrupted_backfill_resumes_after_its_last_acknowledged_event(pipeline: Settings,
                                                                           tmp_path: Path) -> None:
    for i in range(5):
        write(tmp_path, f"p{i}.md", f"# Page {i}\n\nPage number {i} of the resumed backfill.\n", T0 + i)
    stopped = run_backfill(pipeline, tmp_path, Options(prefix="r/", stop_after=2, checkpoint_every=1))
    assert stopped.stopped and stopped.published == 2
    cp = json.loads(checkpoint_path(pipeline, str(tmp_path)).read_text())
    assert (cp["after"], cp["events"]) == ("p1.md", 2)

    # without reading the topic, only the checkpoint keeps the first two from being sent again
    resumed = run_backfill(pipeline, tmp_path, Options(prefix="r/", skip_unchanged=False, wait=True, timeout=120))
    assert (resumed.published, resumed.resumed) == (3, 2)
    assert sorted(events_of(pipeline, "r/")) == [f"r/p{i}.md" for i in range(5)]
    assert not checkpoint_path(pipeline, str(tmp_path)).exists()
    assert all(stored(pipeline, f"r/p{i}.md") for i in range(5))


def test_a_json_lines_file_with_a_version_field(pipeline: Settings, tmp_path: Path) -> None:
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join([
        json.dumps({"doc_id": "j/one", "content": "# One\n\nThe first document.", "rev": "2024-05-01T10:00:00Z",
                    "metadata": {"lang": "en"}}),
        '{"doc_id": "j/broken", ',
        json.dumps({"doc_id": "j/two", "title": "Two", "content": "The second one, plain.", "rev": 42,
                    "content_type": "text/plain"}),
    ]) + "\n", encoding="utf-8")
    summary = run_backfill(pipeline, path, Options(version_field="rev", source="export", wait=True, timeout=120))
    assert (summary.published, summary.errors) == (2, 1)
    one, two = stored(pipeline, "j/one"), stored(pipeline, "j/two")
    assert {p["version"] for p in one.values()} == {1_714_557_600_000_000}
    assert {(p["version"], p["title"]) for p in two.values()} == {(42, "Two")}
    assert json.loads(next(iter(one.values()))["metadata_json"]) == {"lang": "en", SOURCE_FIELD: "export"}
