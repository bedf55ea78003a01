"""``freshet dlq``: list, show and replay the records on the dead-letter topic.

The pure part lives in :mod:`workers.dead_letters` (reading, grouping and finding dead letters) and
:mod:`workers.dead_letter_replay` (what to publish again, and the records). This module does the
I/O: it reads the topics with :func:`freshet.client.read_to_end` and produces with the client's
producer, waiting for every ack; and it renders one dead letter as text or JSON for ``dlq show``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from freshet.errors import TransientError
from freshet.settings import Settings
from workers.dead_letter_replay import Ledger, ledger_from, replay_record
from workers.dead_letters import DeadLetter, from_record, in_order


def read_dead_letters(settings: Settings) -> list[DeadLetter]:
    """Every record of the dead-letter topic (the whole topic is read: tools, not hot paths)."""
    from freshet.client import read_to_end

    return in_order(from_record(r) for r in read_to_end(settings.kafka_access, settings.topic_dead_letter))


def read_ledger(settings: Settings) -> Ledger:
    """The replay headers on the changes topic (read from its beginning)."""
    from freshet.client import read_to_end

    return ledger_from(r.headers or [] for r in read_to_end(settings.kafka_access, settings.topic_changes))


def publish_replays(settings: Settings, letters: Sequence[DeadLetter], *, progress: bool = True) -> int:
    """Publish each dead letter to the changes topic and wait for every ack; the number sent."""
    from kafka.errors import KafkaError
    from tqdm import tqdm

    from freshet.client import producer as make_producer

    producer = make_producer(settings.kafka_access, linger_ms=5)
    try:
        partitions = len(producer.partitions_for(settings.topic_changes) or ())
        futures = []
        for d in tqdm(letters, desc="replaying", unit="record", disable=not progress):
            rec = replay_record(d, dead_letter_topic=settings.topic_dead_letter,
                                changes_topic=settings.topic_changes, partitions=partitions)
            futures.append(producer.send(settings.topic_changes, **rec))
        producer.flush(timeout=120)
        for fut in futures:
            fut.get(timeout=60)
        return len(futures)
    except KafkaError as exc:
        raise TransientError(f"replay to {settings.topic_changes!r} failed: {exc}; nothing after the failure is "
                             "acknowledged, and running the replay again sends only what is missing") from exc
    finally:
        producer.close()


def show_lines(d: DeadLetter, topic: str) -> list[str]:
    """One dead letter in full: its freshet headers, key, every header decoded, the value
    (pretty-printed when it is JSON)."""
    at = d.timestamp.isoformat() if d.timestamp else "no timestamp"
    lines = [f"dead letter {d.position} of {topic} ({at})",
             f"  reason     {d.reason}", f"  error      {d.error}", f"  source     {d.source}",
             f"  worker     {d.worker}", f"  truncated  {d.truncated or 'no (whole record)'}"]
    if d.replay_of:
        lines.append(f"  replay of  {d.replay_of}")
    lines += [f"key: {_shown(d.key)}", "headers:"] + [f"  {k}: {_shown(v)}" for k, v in d.headers]
    if d.value is None:
        return [*lines, "value: null (a tombstone, or dropped: see truncated)"]
    try:
        body = json.dumps(json.loads(d.value), indent=2, ensure_ascii=False)
        kind = "JSON"
    except (ValueError, RecursionError):
        body, kind = _shown(d.value), "not JSON" + (", cut" if d.truncated else "")
    return [*lines, f"value ({len(d.value):,} bytes, {kind}):", body]


def _shown(raw: bytes | None) -> str:
    if raw is None:
        return "null"
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return repr(raw)


def as_json(d: DeadLetter) -> dict[str, Any]:
    return {"position": d.position, "timestamp": d.timestamp.isoformat() if d.timestamp else None,
            "reason": d.reason, "error": d.error, "source": d.source, "worker": d.worker,
            "truncated": d.truncated, "replay_of": d.replay_of, "key": _shown(d.key),
            "headers": [[k, _shown(v)] for k, v in d.headers],
            "value": None if d.value is None else _shown(d.value)}
