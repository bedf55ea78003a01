"""The indexer's state table, written so that a write is done only when Kafka has it.

A Faust table sends each change to its changelog with ``send_soon`` and only logs a failed send,
while later records still land: a position could then move past a state that was lost. Here a
write sets the value in the table's local store directly (no ``send_soon``) and produces the
changelog record itself, to the partition the caller names (the source partition of the record
that decided it, as Faust would), and returns once the broker acknowledged every record of the
call. A failed send is retried (the values are idempotent) until the broker takes it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from streams.sending import send_all

Write = tuple[str, Any, int]
"""(key, JSON-able value, changelog partition)."""


class StateTable:
    """A Faust table whose writes are acknowledged by Kafka before they count as done."""

    def __init__(self, table: Any) -> None:
        self._table = table

    def get(self, key: str) -> Any:
        return self._table.data.get(key)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(list(self._table.data.items()))

    async def put(self, writes: Sequence[Write], *, what: str = "state_write") -> None:
        """Set each key locally, send every changelog record, wait for all their acknowledgements."""
        for key, value, _ in writes:
            self._table.data[key] = value
        t = self._table
        await send_all(t.changelog_topic, [
            {"key": key, "value": value, "partition": partition, "key_serializer": t.key_serializer,
             "value_serializer": t.value_serializer, "callback": t._on_changelog_sent}
            for key, value, partition in writes], what=what)
