"""Load generation for the benchmarks (pure: no Kafka, no Weaviate): percentiles, summaries, a
fixed-rate open loop and an N-client closed loop over any ``submit``/``call`` function."""

from __future__ import annotations

import itertools
import math
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from freshet.errors import FreshetError

T = TypeVar("T")
REPLY_TIMEOUT = 30.0


# --- pure parts: statistics and the two load loops ----------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolating linearly between closest ranks (numpy's default)."""
    if not values or not 0 <= q <= 100:
        raise ValueError(f"percentile {q!r} of {len(values)} values: need values and 0 <= q <= 100")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """One request: its latency, and either its result or why it failed."""

    latency_ms: float
    value: T | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    """Latency figures of one phase; only successful requests count towards the latencies."""

    count: int
    errors: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    throughput_rps: float
    """Successful requests per second of the phase's wall time (first send to last reply)."""
    first_error: str | None = None


def summarize(outcomes: Sequence[Outcome[Any]], seconds: float) -> Summary:
    """Summarize a phase; raise :class:`FreshetError` if no request succeeded."""
    ok = [o.latency_ms for o in outcomes if o.error is None]
    failed = [o.error for o in outcomes if o.error is not None]
    if not ok:
        raise FreshetError(f"all {len(outcomes)} requests failed, e.g. {failed[0] if failed else '?'}")
    return Summary(count=len(ok), errors=len(failed), p50_ms=percentile(ok, 50), p99_ms=percentile(ok, 99),
                   mean_ms=statistics.fmean(ok), throughput_rps=len(ok) / seconds if seconds > 0 else 0.0,
                   first_error=failed[0] if failed else None)


def send_times(rate: float, count: int, start: float = 0.0) -> list[float]:
    """When each of ``count`` requests is due at ``rate`` per second: ``start + i / rate``."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate!r}")
    return [start + i / rate for i in range(count)]


class _Stamps:
    """When each request completed, noted by future callbacks (which run after ``wait`` may return)."""

    def __init__(self, count: int, clock: Callable[[], float]) -> None:
        self.at: list[float | None] = [None] * count
        self._clock = clock
        self._left = count
        self._cond = threading.Condition()

    def callback(self, i: int) -> Callable[[Future[Any]], None]:
        def note(_fut: Future[Any]) -> None:
            with self._cond:
                self.at[i] = self._clock()
                self._left -= 1
                self._cond.notify_all()
        return note

    def wait(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._left == 0, timeout)


def open_loop(submit: Callable[[int], Future[T]], *, rate: float, count: int, timeout: float = REPLY_TIMEOUT,
              clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep,
              tick: Callable[[], None] = lambda: None) -> tuple[list[Outcome[T]], float, float]:
    """Call ``submit(i)`` on a fixed schedule, whatever the replies do (open loop).

    A late sender sends at once rather than shifting the schedule; latency runs from the scheduled
    time to the future's completion. Returns the outcomes, the phase's wall seconds and the worst
    lag of a send behind its schedule (ms); a request unanswered ``timeout`` seconds after the last
    send counts as an error.
    """
    due = send_times(rate, count, clock())
    stamps = _Stamps(count, clock)
    futures: list[Future[T]] = []
    lag = 0.0
    for i, at in enumerate(due):
        ahead = at - clock()
        if ahead > 0:
            sleep(ahead)
        lag = max(lag, clock() - at)
        fut = submit(i)
        fut.add_done_callback(stamps.callback(i))
        futures.append(fut)
        tick()
    stamps.wait(timeout)
    outcomes: list[Outcome[T]] = []
    for at, fut, end in zip(due, futures, stamps.at, strict=True):
        if end is None or not fut.done():
            outcomes.append(Outcome(timeout * 1e3, error=f"no reply within {timeout:.0f}s"))
        elif (exc := fut.exception()) is not None:
            outcomes.append(Outcome((end - at) * 1e3, error=f"{type(exc).__name__}: {exc}"))
        else:
            outcomes.append(Outcome((end - at) * 1e3, value=fut.result()))
    ends = [end for end in stamps.at if end is not None]
    return outcomes, (max(ends) if ends else clock()) - due[0], lag * 1e3


def closed_loop(call: Callable[[int], T], *, clients: int, count: int,
                clock: Callable[[], float] = time.perf_counter,
                tick: Callable[[], None] = lambda: None) -> tuple[list[Outcome[T]], float]:
    """``clients`` threads each call ``call(i)`` back to back until ``count`` calls are made.

    Returns the outcomes (in call order) and the wall seconds. An exception of ``call`` is an
    error outcome, never lost with its thread.
    """
    counter = itertools.count()
    lock = threading.Lock()
    outcomes: list[Outcome[T] | None] = [None] * count

    def client() -> None:
        while True:
            with lock:
                i = next(counter)
            if i >= count:
                return
            t0 = clock()
            try:
                value = call(i)
                outcomes[i] = Outcome((clock() - t0) * 1e3, value=value)
            except Exception as exc:  # counted and reported as an error outcome, not lost with the thread
                outcomes[i] = Outcome((clock() - t0) * 1e3, error=f"{type(exc).__name__}: {exc}")
            with lock:
                tick()

    started = clock()
    threads = [threading.Thread(target=client, name=f"bench-client-{n}", daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [o for o in outcomes if o is not None], clock() - started


# --- the two ways of searching --------------------------------------------------------------------
