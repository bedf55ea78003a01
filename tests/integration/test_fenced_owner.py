"""An indexer cut off from Weaviate mid-batch loses its partitions and writes nothing for them afterwards.

The defect (issue 10, fencing): a batch in flight when its partitions are revoked went on writing
(its retry loop waits out a Weaviate it cannot reach), so once the path came back, the old owner
wrote its stale version over what the new owner had indexed since. Here the first indexer reaches
Weaviate through a proxy the test cuts while a batch of version 2 is in flight; a second indexer
joins and takes partitions over, applies versions 2 and 3; then the path is mended. With fencing
the first indexer's batch is dropped at its next write (the rebalance had started), so no
document's applied record or state goes back to an older version, no record of the state changelog
or the applied topic comes from a lower group generation after a higher one, and the index equals
a clean load of version 3 (``freshet verify --vectors``). Without it (commit fc2bd4b) the first
indexer's retry wrote version 2 after version 3: "b'fence/1.md': version 2 after 3" on the applied topic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from freshet.client import AppliedWatcher, wanted_versions
from freshet.publishing import publish_events
from freshet.settings import Settings
from freshet.verify import run_verify, state_topic
from ops import procs
from ops.stack import Stack, drop_pipeline
from schemas.change import ChangeEvent
from tests.integration.conftest import make_settings
from tests.integration.helpers import records_now
from tests.integration.netproxy import Proxy
from tests.integration.test_rebalance import start as start_second
from workers.delivery import POSITION_PREFIX
from workers.fencing import GENERATION_HEADER, WRITER_HEADER, fence_violations, header

pytestmark = pytest.mark.integration

DOCS = 6  # over both partitions (asserted below)


def versions(v: int) -> list[ChangeEvent]:
    return [ChangeEvent(doc_id=f"fence/{i}.md", op="upsert", version=v,
                        content=f"# Note {i}\n\n" + f"Version {v} of note {i}, about fencing writers. " * 8)
            for i in range(DOCS)]


@pytest.fixture
def cut_off_indexer(endpoints, tmp_path: Path) -> Iterator[tuple[Settings, Settings, list[Proxy]]]:  # type: ignore[no-untyped-def]
    """A first indexer that reaches Weaviate through proxies, and the settings of a second (direct) one."""
    base = make_settings(endpoints, tmp_path / "a")
    proxies = [Proxy(base.weaviate_host, base.weaviate_http_port), Proxy(base.weaviate_host, base.weaviate_grpc_port)]
    first = Settings(**{**base.model_dump(), "weaviate_host": "127.0.0.1", "weaviate_http_port": proxies[0].port,
                        "weaviate_grpc_port": proxies[1].port, "weaviate_timeout_seconds": 5.0})
    second = Settings(**{**base.model_dump(), "home": tmp_path / "b", "indexer_web_port": procs.free_port()})
    Stack(first).up(["indexer"])
    yield first, second, proxies
    Stack(second).down(["indexer"])
    Stack(first).down(["indexer"])
    for p in proxies:
        p.close()
    drop_pipeline(second)


def regressions(records: list[tuple[bytes, int]]) -> list[str]:
    """Documents whose version goes down along a topic (records of one key keep their log order)."""
    top: dict[bytes, int] = {}
    out = []
    for key, version in records:
        if version < top.get(key, -1):
            out.append(f"{key!r}: version {version} after {top[key]}")
        top[key] = max(version, top.get(key, -1))
    return out


def wait_for(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def test_an_owner_cut_off_mid_batch_writes_nothing_once_its_partitions_moved(
        cut_off_indexer: tuple[Settings, Settings, list[Proxy]]) -> None:
    first, second, proxies = cut_off_indexer
    watcher = AppliedWatcher(first.bootstrap_servers, first.topic_applied)
    log_a = first.home / "logs" / "indexer.log"
    try:
        publish_events(first, versions(1), wait=True, timeout=120)
        partitions = {r.partition for r in records_now(first, first.topic_changes)}
        assert partitions == {0, 1}, f"the documents must cover both partitions, got {partitions}"

        for p in proxies:
            p.cut()
        publish_events(first, versions(2), wait=False, timeout=0)
        wait_for("the first indexer retrying its batch", lambda: "apply_batch" in log_a.read_text()
                 and "transient_fault_retrying" in log_a.read_text(), 60)

        start_second(second)  # joins the group: the partitions move while the first one's batch is in flight
        v2, v3 = wanted_versions(versions(2)), wanted_versions(versions(3))
        wait_for("the second indexer applying version 2", lambda: watcher.count_applied(v2), 180)
        publish_events(first, versions(3), wait=False, timeout=0)
        wait_for("the second indexer applying version 3", lambda: watcher.count_applied(v3), 60)
        time.sleep(5)  # the rest of its partition's batch

        for p in proxies:
            p.mend()
        assert watcher.wait(v3, 180), "version 3 was not applied everywhere"
        time.sleep(40)  # a fenceless old owner's retry lands within its backoff cap (30 s)
    finally:
        watcher.close()

    applied = [(r.key, json.loads(r.value)["version"]) for r in records_now(first, first.topic_applied)
               if r.value is not None and r.key and not r.key.startswith(b"\x00")]
    states = [(r.key, json.loads(r.value)["version"]) for r in records_now(first, state_topic(first))
              if r.value is not None and not json.loads(r.key).startswith(POSITION_PREFIX)]
    assert applied and states, "nothing read back from the applied topic or the state changelog"
    assert regressions(applied) == [], "an applied record of an older version came after a newer one"
    assert regressions(states) == [], "a state of an older version came after a newer one"
    for topic in (state_topic(first), first.topic_applied):
        written = [(r.partition, r.offset, header(r.headers, GENERATION_HEADER), header(r.headers, WRITER_HEADER))
                   for r in records_now(first, topic)]
        assert written, f"nothing read back from {topic}"
        assert fence_violations(written) == [], topic
    assert run_verify(second, vectors=True) == []
    fenced = log_a.read_text().count("batch_fenced")
    print(f"the cut-off indexer's batches fenced: {fenced}")
