"""A state record Kafka refuses is waited for, never lost behind a position that moved on.

Faust writes a table change with ``send_soon`` and only logs a failed send, while later records of
the table still land. So when the broker refused a document's state (here: the changelog topic's
``max.message.bytes`` lowered under it, as an operator might), the document was announced applied
and the partition's position moved past it, and the changelog never held its state: a restart
would lose it, and ``freshet verify`` (which reads the changelog) shows it missing. This test
makes that refusal happen on purpose, every time, with a later document of the same partition
behind it.

Now a batch is done only when Kafka acknowledged its states: the indexer waits (logging
``state_write_refused``), announces nothing, and moves on once the topic takes the record.
"""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.partitioner.default import murmur2

from freshet.publishing import publish_events
from freshet.settings import Settings
from freshet.verify import run_verify, state_topic
from schemas.applied import AppliedRecord, parse_applied
from schemas.change import ChangeEvent, document_key
from tests.integration.helpers import publish_and_wait, records_now

pytestmark = pytest.mark.integration

BROKER_DEFAULT = 1_048_588  # Kafka's default message.max.bytes
SMALL_LIMIT = 2_500  # bytes: a one-chunk state fits, the big document's (61 chunks, ~4 kB) does not
BIG = "# Big\n\n" + "".join(f"## Part {i}\n\nPart {i} of the big document says something of its own, long enough "
                             "to be a chunk by itself here.\n\n" for i in range(60))


def partition_of(doc_id: str, partitions: int) -> int:
    """The changes partition the publisher's default partitioner picks for a tenant-less document."""
    return int(murmur2(document_key(None, doc_id).encode()) & 0x7FFFFFFF) % partitions


def small(doc_id: str) -> ChangeEvent:
    return ChangeEvent(doc_id=doc_id, op="upsert", version=1,
                       content=f"# {doc_id}\n\nA short note that fits in a single chunk, its state in a small record.")


def set_max_message_bytes(settings: Settings, value: int) -> None:
    """Set the state changelog topic's ``max.message.bytes``, keeping its other configs."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers.split(","))
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, state_topic(settings), configs={"max.message.bytes": value})
        admin.alter_configs([resource], incremental=True)
    finally:
        admin.close()


def applied_versions(settings: Settings) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records_now(settings, settings.topic_applied):  # fails if the topic cannot be read
        rec = parse_applied(r.value)
        if isinstance(rec, AppliedRecord):
            out[rec.doc_id] = rec.version
    return out


def test_a_refused_state_is_waited_for_not_lost(indexer_only: Settings) -> None:
    settings = indexer_only
    parts = settings.topic_partitions
    target = partition_of("big.md", parts)
    followers = [f"after-{i}.md" for i in range(50) if partition_of(f"after-{i}.md", parts) == target][:3]
    publish_and_wait(settings, [small("warm.md")])  # the changelog topic exists from here on
    set_max_message_bytes(settings, SMALL_LIMIT)
    try:
        publish_events(settings, [ChangeEvent(doc_id="big.md", op="upsert", version=1, content=BIG)],
                       wait=False, timeout=0)
        time.sleep(3)  # the big state's send is in its own producer batch, the followers' in later ones
        publish_events(settings, [small(d) for d in followers], wait=False, timeout=0)
        log_path = settings.home / "logs" / "indexer.log"
        deadline = time.monotonic() + 60
        while "state_write_refused" not in log_path.read_text(encoding="utf-8"):
            applied = applied_versions(settings)
            assert "big.md" not in applied, (
                "big.md was announced applied while Kafka refused its state: a restart loses it")
            assert time.monotonic() < deadline, "the refusal was never reported in 60 s"
            time.sleep(1)
        time.sleep(10)  # time enough for the followers, had the partition moved on
        applied = applied_versions(settings)
        assert "big.md" not in applied and not set(followers) & set(applied), (
            f"the partition moved past a state Kafka refused: applied {sorted(applied)}")
    finally:
        set_max_message_bytes(settings, BROKER_DEFAULT)
    deadline = time.monotonic() + 90
    while not {"big.md", *followers} <= set(applied_versions(settings)):  # within one backoff period (30 s)
        assert time.monotonic() < deadline, "the partition did not go on once the topic took the state"
        time.sleep(1)
    states = [json.loads(r.key) for r in records_now(settings, state_topic(settings))]
    assert document_key(None, "big.md") in states, "the big document's state never reached the changelog"
    assert run_verify(settings) == []
