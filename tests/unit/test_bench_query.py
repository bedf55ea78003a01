"""The query benchmark's pure parts: percentiles, summaries, the rate scheduler and the load loops."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest

from freshet.errors import FreshetError
from ops.bench.load import Outcome, closed_loop, open_loop, percentile, send_times, summarize
from ops.bench.query import format_report, load_corpus, load_queries


def test_percentile_interpolates_between_closest_ranks_like_numpy() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize(("values", "q"), [([], 50), ([1.0], -1), ([1.0], 101)])
def test_percentile_refuses_no_values_and_out_of_range_q(values: list[float], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(values, q)


def test_summary_counts_only_successful_requests_in_latency_and_throughput() -> None:
    outcomes = [Outcome(10.0, value=1), Outcome(20.0, value=2), Outcome(30.0, value=3),
                Outcome(5000.0, error="no reply within 5s"), Outcome(40.0, value=4)]
    s = summarize(outcomes, seconds=2.0)
    assert (s.count, s.errors, s.first_error) == (4, 1, "no reply within 5s")
    assert (s.p50_ms, s.mean_ms, s.throughput_rps) == (25.0, 25.0, 2.0)
    assert s.p99_ms == pytest.approx(39.7)


def test_summary_of_a_phase_where_everything_failed_is_an_error() -> None:
    with pytest.raises(FreshetError, match="all 2 requests failed, e.g. boom"):
        summarize([Outcome(1.0, error="boom"), Outcome(1.0, error="bang")], seconds=1.0)


def test_send_times_are_evenly_spaced_at_the_rate() -> None:
    assert send_times(4.0, 3, start=10.0) == [10.0, 10.25, 10.5]
    assert send_times(4.0, 0) == []
    with pytest.raises(ValueError, match="positive"):
        send_times(0.0, 3)


class Sim:
    """A simulated clock and server: each request is answered ``latency`` seconds after it is sent,
    as simulated time passes (the loop's sleeps); ``never`` are not answered, ``failing`` raise."""

    def __init__(self, latency: float, *, never: frozenset[int] = frozenset(), failing: frozenset[int] = frozenset(),
                 blocking: dict[int, float] | None = None) -> None:
        self.now = 100.0
        self.latency = latency
        self.never, self.failing, self.blocking = never, failing, blocking or {}
        self.sent: list[float] = []
        self._pending: list[tuple[float, int, Future[int]]] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.advance(self.now + seconds)

    def advance(self, until: float) -> None:
        for finish, i, fut in sorted(self._pending, key=lambda p: p[0]):
            if finish <= until:
                self.now = max(self.now, finish)
                self._pending.remove((finish, i, fut))
                if i in self.failing:
                    fut.set_exception(RuntimeError(f"request {i} failed"))
                else:
                    fut.set_result(i)
        self.now = max(self.now, until)

    def submit(self, i: int) -> Future[int]:
        self.now += self.blocking.get(i, 0.0)  # the sender stalled before this send
        self.sent.append(self.now)
        fut: Future[int] = Future()
        if i not in self.never:
            self._pending.append((self.now + self.latency, i, fut))
        return fut

    def flush_after(self, count: int) -> Callable[[], None]:
        """A ``tick`` that lets every answer arrive once ``count`` requests are sent."""
        ticks = iter(range(1, count + 1))

        def tick() -> None:
            if next(ticks) == count:
                self.advance(self.now + 60.0)
        return tick


def test_open_loop_sends_on_schedule_and_times_each_reply_from_its_send() -> None:
    sim = Sim(0.03, never=frozenset({3}), failing=frozenset({2}))
    outcomes, seconds, lag = open_loop(sim.submit, rate=10.0, count=5, timeout=0.05, clock=sim.clock,
                                       sleep=sim.sleep, tick=sim.flush_after(5))
    assert sim.sent == pytest.approx([100.0, 100.1, 100.2, 100.3, 100.4])
    assert lag == pytest.approx(0.0)
    assert [o.value for o in outcomes] == [0, 1, None, None, 4]
    assert [o.latency_ms for o in outcomes if o.value is not None] == pytest.approx([30.0, 30.0, 30.0])
    assert outcomes[2].error == "RuntimeError: request 2 failed"
    assert outcomes[3].error == "no reply within 0s"
    assert seconds == pytest.approx(0.43)  # first send to last reply


def test_a_late_sender_catches_up_at_once_and_latency_counts_from_the_schedule() -> None:
    sim = Sim(0.01, blocking={0: 0.25})  # the first send stalls for 250 ms
    outcomes, _, lag = open_loop(sim.submit, rate=10.0, count=4, clock=sim.clock, sleep=sim.sleep,
                                 tick=sim.flush_after(4))
    # 0, 1 and 2 were due at 100.0, 100.1 and 100.2: all go at 100.25; 3 goes on time at 100.3.
    assert sim.sent == pytest.approx([100.25, 100.25, 100.25, 100.3])
    assert lag == pytest.approx(150.0)  # call 2 began 150 ms late; call 0 began on time, then stalled
    assert [o.latency_ms for o in outcomes] == pytest.approx([260.0, 160.0, 60.0, 10.0])


def test_closed_loop_runs_clients_at_once_and_makes_each_call_once() -> None:
    together = threading.Barrier(3, timeout=5)  # the first three calls must overlap
    calls: list[int] = []
    lock = threading.Lock()

    def call(i: int) -> int:
        with lock:
            calls.append(i)
        if i < 3:
            together.wait()
        if i == 5:
            raise RuntimeError("bad request")
        return i * 2

    ticks: list[int] = []
    outcomes, seconds = closed_loop(call, clients=3, count=10, tick=lambda: ticks.append(1))
    assert sorted(calls) == list(range(10))
    assert len(ticks) == 10
    assert [o.value for o in outcomes] == [0, 2, 4, 6, 8, None, 12, 14, 16, 18]
    assert outcomes[5].error == "RuntimeError: bad request"
    assert all(o.latency_ms >= 0 for o in outcomes)
    assert seconds > 0


def test_corpus_becomes_plain_text_upserts_and_skips_empty_passages(tmp_path: Path) -> None:
    rows = [{"_id": "1", "title": "", "text": "first"}, {"_id": "2", "text": "  "},
            {"_id": 3, "title": "T", "text": "third"}, {"_id": "4", "text": "fourth"}]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    events = load_corpus(tmp_path, 2)
    assert [(e.doc_id, e.title, e.content, e.version, e.content_type) for e in events] == [
        ("1", None, "first", 1, "text/plain"), ("3", "T", "third", 1, "text/plain")]


def test_queries_are_read_in_order_and_an_empty_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "queries.jsonl").write_text('{"_id": "a", "text": "one"}\n\n{"_id": "b", "text": "two"}\n')
    assert load_queries(tmp_path) == ["one", "two"]
    (tmp_path / "queries.jsonl").write_text("")
    with pytest.raises(FreshetError, match="holds no queries"):
        load_queries(tmp_path)


def test_report_shows_both_ways_and_their_ratios() -> None:
    fig = {"count": 4, "errors": 0, "p50_ms": 20.0, "p99_ms": 40.0, "mean_ms": 25.0, "throughput_rps": 10.0,
           "embed_ms_p50": 5.0, "search_ms_p50": 5.0, "outside_ms_p50": 10.0, "first_error": None,
           "load_1m": 1.5}
    direct = fig | {"p50_ms": 10.0, "p99_ms": 10.0}
    phase = {"kafka": fig, "direct": direct, "p50_ratio": 2.0, "p99_ratio": 4.0}
    report = {"docs": 10, "dataset": "d", "queries": 2, "top_k": 10, "warmup": 2, "cpus": 2,
              "load_before": [1.0], "load_after": [2.0], "rate": 20.0, "requests": 4, "clients": 8,
              "modes": {"hybrid": {"params": {"alpha": 0.5, "fetch": 30}, "same_hits": {"same": 2, "of": 2},
                                   "rate": phase | {"kafka": fig | {"max_send_lag_ms": 0.0}}, "clients": phase}}}
    text = format_report(report)
    assert "same top 10 for 2 of 2" in text
    assert text.count("2.00x    4.00x") == 2
    assert "8 concurrent clients" in text
    assert "served 10.0 of 20 req/s: saturated" in text  # open loop only: 10 of the asked 20 req/s
    assert text.count("saturated") == 2
