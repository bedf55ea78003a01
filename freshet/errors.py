"""The one error root of freshet, and its branches.

::

    FreshetError
    ├── ConfigError            a setting is missing or malformed
    ├── StackError             the local Kafka/Weaviate stack could not be installed or started
    ├── InvalidEventError      an input record breaks its contract (goes to the dead-letter topic)
    ├── TransientError         an external system is away for now; wait and retry, never drop
    │   └── StoreUnavailableError  Weaviate cannot take the work now (down, read-only, memory, 5xx)
    ├── FencedError            a write under a partition lease that no longer holds (the unit of work is dropped)
    ├── StoreError             Weaviate refused a request for a reason retrying won't fix
    │   └── ObjectRejectedError    ...namely these objects, for their own content (validation)
    ├── RecordRefusedError     Kafka refuses a record for good (its size, its topic): streams.sending
    └── RelayoutRefusedError   ``freshet relayout`` cannot run now, with every reason: freshet.relayout

Messages say what failed, quote the offending value, and say how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class FreshetError(Exception):
    """Root of every error freshet raises on purpose."""


class ConfigError(FreshetError):
    """A setting is missing or malformed."""


class StackError(FreshetError):
    """The local stack (Kafka, Weaviate, workers) could not be installed, started or reached."""

    def __init__(self, message: str, *, service: str, log_tail: str = "") -> None:
        self.service = service
        self.log_tail = log_tail
        super().__init__(message if not log_tail else f"{message}\n--- last log lines of {service} ---\n{log_tail}")


class InvalidEventError(FreshetError):
    """An input record breaks its contract.

    ``reason`` is a short stable code (``invalid_json``, ``schema``, ...) used as the dead-letter
    header and metric label; the message is the human explanation.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class TransientError(FreshetError):
    """An external system is unavailable for now: the caller waits with backoff and retries."""


class StoreUnavailableError(TransientError):
    """Weaviate cannot do the work now: down, restarting, a READONLY shard, memory pressure, a 5xx
    or an error nobody recognised. Nothing of the failed call is acknowledged; retrying it whole is
    safe (writes are idempotent). Never a reason to dead-letter an event.

    ``kind`` is the metric label of the fault (``unavailable``, ``readonly``, ``memory``,
    ``server_error``; see :mod:`workers.weaviate_faults`).
    """

    def __init__(self, message: str, *, kind: str = "unavailable") -> None:
        self.kind = kind
        super().__init__(message)


class FencedError(FreshetError):
    """A write under a partition lease that no longer holds (a rebalance started, or the partition
    moved): the unit of work is dropped unacknowledged; the partition's next owner redoes it."""


class StoreError(FreshetError):
    """Weaviate refused a request in a way that retrying will not fix."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """One object Weaviate rejected for its own content."""

    id: str
    """The object (chunk) id."""
    tenant: str | None
    doc_id: str
    message: str
    """Weaviate's reason, verbatim (e.g. ``invalid integer property 'm_year' ...``)."""


class ObjectRejectedError(StoreError):
    """Weaviate validated these objects and rejected them: the fault of the events they come from.

    Raised only when *every* failure of the call was such a rejection; the call's other objects
    were written (``written`` holds their ids). The documents named in ``rejected`` are the only
    ones whose events may be dead-lettered; the rest of the batch can be applied again.
    """

    def __init__(self, rejected: Sequence[Rejection], *, written: Sequence[str] = ()) -> None:
        self.rejected = tuple(rejected)
        self.written = tuple(written)
        first = self.rejected[0]
        super().__init__(
            f"Weaviate rejected {len(self.rejected)} chunk(s) of {len(self.documents)} document(s) for their "
            f"content, e.g. chunk {first.id} of document {first.doc_id!r} (tenant {first.tenant!r}): {first.message}. "
            "Fix the event (or the declared metadata type) and publish the document again."
        )

    @property
    def documents(self) -> set[tuple[str | None, str]]:
        """The (tenant, doc_id) of every document with a rejected chunk."""
        return {(r.tenant, r.doc_id) for r in self.rejected}
