"""The indexer's state table, written so that a write is done only when Kafka has it.

A Faust table sends each change to its changelog with ``send_soon`` and only logs a failed send,
while later records still land: a position could then move past a state that was lost. Here a
write produces the changelog records itself, to the partition the caller names (the source
partition of the record that decided it, as Faust would), and sets the values in the table's local
store only once the broker acknowledged every record of the call, so nothing reads a state Kafka
does not have. A failed send is retried (the values are idempotent) until the broker takes it.

A record the broker refuses for good (over the topic's ``max.message.bytes``: a topic configured
below what freshet writes, since the size of a state is bounded by ``FRESHET_MAX_CHUNKS_PER_DOCUMENT``)
is the operator's to fix, not the event's: the write is logged (``state_write_refused``), counted
(``freshet_kafka_records_refused_total``) and retried with backoff, and the partition waits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import structlog

from freshet.errors import TransientError
from streams.sending import RecordRefusedError, send_all
from workers import metrics
from workers.fencing import Fence
from workers.retry import until_done

log = structlog.get_logger(__name__)

Write = tuple[str, Any, int]
"""(key, JSON-able value, changelog partition)."""


class StateTable:
    """A Faust table whose writes are acknowledged by Kafka before they count as done; with a
    ``fence``, each write checks the caller's partition lease first and carries its headers."""

    def __init__(self, table: Any, fence: Fence | None = None) -> None:
        self._table = table
        self._fence = fence

    def get(self, key: str) -> Any:
        return self._table.data.get(key)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(list(self._table.data.items()))

    async def put(self, writes: Sequence[Write], *, what: str = "state_write") -> None:
        """Send every changelog record, wait for all their acknowledgements, then set each key locally."""
        t = self._table
        messages = [{"key": key, "value": value, "partition": partition, "key_serializer": t.key_serializer,
                     "value_serializer": t.value_serializer, "callback": t._on_changelog_sent}
                    for key, value, partition in writes]

        async def once() -> None:
            try:
                await send_all(t.changelog_topic, messages, what=what, fence=self._fence)
            except RecordRefusedError as exc:
                metrics.KAFKA_REFUSED.labels(what).inc()
                log.error("state_write_refused", what=what, topic=exc.topic, records=len(messages), error=str(exc),
                          fix="raise the topic's max.message.bytes (and the broker's message.max.bytes); "
                              "this partition waits until Kafka takes the record")
                raise TransientError(str(exc)) from exc

        if messages:
            await until_done(once, what=what)
        for key, value, _ in writes:
            t.data[key] = value
