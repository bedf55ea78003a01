"""The query worker's terms for one request: where its reply may go, how long it may take. Pure.

Reply topics
    A request names its reply topic (``reply_to``, else the ``reply_topic`` header) and the worker
    produces there, so the name is checked first. It must be a legal Kafka topic name, match the
    allowed glob (``Settings.reply_topics_glob``, default ``<topic_replies>*``), and not be a topic
    freshet itself uses: its own topics (the default reply topic excepted), Faust's internal topics
    of this deployment (``<consumer_group_prefix>-...``: state changelogs, the leader topic) and
    Kafka's (``__...``). The trap this closes: a reply on the compacted applied topic, keyed like a
    document, erases that document's applied record; a reply on the indexer's state changelog
    crashes the indexer the next time it recovers its table. A refused request is answered with a
    ``reply_topic_refused`` error on the default reply topic, never on the topic it named.

Time allowed
    A deadline counts from the request record's Kafka timestamp, which the *producer* sets. Trusting
    it alone lets a timestamp in the future hold a worker slot for as long as it likes, so the time
    allowed is also capped on the worker's own clock: never more than the request's own deadline
    counted from when the worker read it, never more than ``query_max_wait_ms``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from freshet.settings import Settings
from schemas.search import SearchReply, header_text, reply_to_of, request_id_of
from workers.search import error_reply

#: Error code of a reply whose requested reply topic was refused.
REPLY_TOPIC_REFUSED = "reply_topic_refused"
#: Error code (and dead-letter reason) of a request whose handling failed unexpectedly.
PROCESSING_ERROR = "processing_error"

_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


@dataclass(frozen=True, slots=True)
class Route:
    """Where one reply goes."""

    topic: str
    """The requested topic if allowed, else the default reply topic."""
    refusal: str | None = None
    """Why the requested topic was refused (the error reply's message); None when it was not."""


@dataclass(frozen=True, slots=True)
class ReplyPolicy:
    """Which topics replies may go to. Build it with :meth:`of`."""

    default: str
    """The default reply topic: always allowed."""
    pattern: str
    """fnmatch glob (case-sensitive) a requested topic must match."""
    reserved: frozenset[str]
    """Topics freshet uses itself: never a reply topic."""
    internal_prefix: str
    """Prefix of Faust's internal topics of this deployment (``<consumer_group_prefix>-``)."""

    @classmethod
    def of(cls, settings: Settings) -> ReplyPolicy:
        return cls(default=settings.topic_replies, pattern=settings.reply_topics_glob,
                   reserved=frozenset(settings.topics()) - {settings.topic_replies},
                   internal_prefix=f"{settings.consumer_group_prefix}-")

    def refusal(self, topic: str) -> str | None:
        """None when a reply may go to ``topic``, else why not, naming the topic and the pattern."""
        if topic == self.default:
            return None
        why = self._why_not(topic)
        if why is None:
            return None
        return (f"reply topic {topic!r} refused: {why}; replies go to topics matching {self.pattern!r} "
                f"(FRESHET_REPLY_TOPIC_PATTERN) that freshet does not use itself, or to {self.default!r} "
                f"when the request names none")

    def route(self, requested: str | None) -> Route:
        """Where the reply to a request naming ``requested`` (None: nothing) goes."""
        if not requested:
            return Route(self.default)
        refusal = self.refusal(requested)
        return Route(self.default, refusal) if refusal else Route(requested)

    def _why_not(self, topic: str) -> str | None:
        if not _LEGAL_TOPIC.fullmatch(topic) or topic in (".", ".."):
            return "not a legal Kafka topic name (1-249 of a-z, A-Z, 0-9, '.', '_', '-')"
        if topic.startswith("__"):
            return "Kafka's internal topics are never reply topics"
        if topic.startswith(self.internal_prefix):
            return f"topics starting with {self.internal_prefix!r} are this deployment's Faust internals"
        if topic in self.reserved:
            return "it is one of freshet's own topics"
        if not fnmatchcase(topic, self.pattern):
            return "it does not match the allowed pattern"
        return None


def seconds_allowed(deadline_ms: int | None, sent_at: float | None, now: float, *, default_deadline_ms: int,
                    max_wait_ms: int) -> float:
    """How many seconds a request read at ``now`` may still take; zero or less: its deadline has passed.

    ``sent_at`` and ``now`` are wall-clock seconds (``sent_at``: the record's Kafka timestamp; None
    or not positive: unknown). The result is the least of the deadline left from ``sent_at``, the
    whole deadline counted from ``now`` (so a timestamp in the future buys nothing) and
    ``max_wait_ms``. The caller turns it into a monotonic instant at once; the wall clock is read
    only here, to compare with the producer's.
    """
    budget = (deadline_ms or default_deadline_ms) / 1000
    by_stamp = sent_at + budget - now if sent_at is not None and sent_at > 0 else budget
    return min(by_stamp, budget, max_wait_ms / 1000)


def addressed_error(value: bytes | None, header_rid: bytes | None, header_reply: bytes | None, *, code: str,
                    message: str, policy: ReplyPolicy) -> tuple[str, SearchReply] | None:
    """The error reply to a request that could not be served, and the topic it goes to; None when no
    request id can be read from the body or the headers (then the request is dead-lettered).

    Reads the raw record only (the request may not have parsed), and never raises: an id or a topic
    that is not valid text is treated as absent, or refused.
    """
    rid = request_id_of(value) or header_text(header_rid)
    if rid is None:
        return None
    return policy.route(reply_to_of(value) or header_text(header_reply)).topic, error_reply(rid, code, message)
