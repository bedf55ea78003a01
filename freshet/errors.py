"""The one error root of freshet, and its branches.

::

    FreshetError
    ├── ConfigError            a setting is missing or malformed
    ├── StackError             the local Kafka/Weaviate stack could not be installed or started
    ├── InvalidEventError      an input record breaks its contract (goes to the dead-letter topic)
    ├── TransientError         an external system is away for now; wait and retry, never drop
    │   └── StoreUnavailableError
    └── StoreError             Weaviate refused a write or a query for a reason retrying won't fix

Messages say what failed, quote the offending value, and say how to fix it.
"""

from __future__ import annotations


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
    """Weaviate did not answer (down, restarting, or not reachable yet)."""


class StoreError(FreshetError):
    """Weaviate rejected a request in a way that retrying will not fix."""
