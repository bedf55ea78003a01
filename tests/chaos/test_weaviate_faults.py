"""Scenarios 2 and 4: Weaviate killed for a while mid-stream, then a shard READONLY for as long;
during the outage every search gets a reply within its deadline (``unavailable`` or ``timeout``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ops import faults
from tests.chaos import report
from tests.chaos.conftest import Scale
from tests.chaos.observe import Search, outgoing
from tests.chaos.scenario import Scenario
from tests.chaos.services import Services
from tests.chaos.workload import generate
from workers.embedding import SentenceTransformerEmbedder

pytestmark = pytest.mark.chaos

#: What a search may answer while the store is away: never silence, never a late reply (``ok`` when the
#: store came back in time to answer it, at the window's edges).
ACCEPTED = {("error", "unavailable"), ("timeout", "deadline_exceeded"), ("timeout", None), ("ok", None)}


def test_weaviate_outage_and_readonly_shard(live_services: Services, chaos_dir: Path, report_dir: Path,
                                           scale: Scale, embedder: SentenceTransformerEmbedder) -> None:
    wl = generate(scale.events, seed=scale.seed + 2, prefix="weaviate")
    windows: dict[str, tuple[float, float]] = {}
    with Scenario(live_services, chaos_dir, "weaviate-outage", report_dir, rate=scale.rate, search_rate=3.0,
                  search_deadline_s=3.0) as sc:
        sc.row.events = len(wl.records)

        def outage(s: Scenario) -> None:
            s.wait_published(0.25)
            down = time.monotonic()
            faults.kill9(live_services.pidfile("weaviate"))
            time.sleep(scale.outage_seconds)
            live_services.stack.up(["weaviate"])
            windows["outage"] = (down, time.monotonic())
            s.fault_ended()
            s.wait_published(0.6)
            frozen = time.monotonic()
            shards = faults.set_shard_status(s.settings.weaviate_url, s.settings.collection, "READONLY")
            time.sleep(scale.outage_seconds)
            faults.set_shard_status(s.settings.weaviate_url, s.settings.collection, "READY")
            windows["readonly"] = (frozen, time.monotonic())
            s.fault_ended()
            s.row.faults = (f"kill -9 Weaviate {scale.outage_seconds:.0f} s (down {windows['outage'][1] - down:.0f} s "
                            f"with its restart); {len(shards)} shard(s) READONLY {scale.outage_seconds:.0f} s")

        sc.stream(outgoing(wl.records, sc.settings.topic_changes), outage)
        sc.finish(wl.final, embedder, good=range(len(wl.records)))
        if "outage" in windows:
            readonly = sc.searches.between(*windows["readonly"])
            sc.row.notes.append(f"searches during the READONLY window: {_summary(readonly)}")
    during = sc.searches.between(*windows["outage"]) if "outage" in windows else []
    _searches_row(during, sc, scale, report_dir)
    assert not sc.row.failures, "\n".join(sc.row.failures)
    assert during and all(_accepted(s) for s in during), _summary(during)


def _accepted(s: Search) -> bool:
    return s.within_deadline and (s.status, s.code) in ACCEPTED


def _summary(searches: list[Search]) -> str:
    out: dict[str, int] = {}
    for s in searches:
        late = "" if s.within_deadline or s.done is None else " (late)"
        key = f"{s.status}:{s.code}{late}"
        out[key] = out.get(key, 0) + 1
    return f"{len(searches)} sent: {out}"


def _searches_row(during: list[Search], sc: Scenario, scale: Scale, report_dir: Path) -> None:
    row = report.Row("searches-during-outage", events=sc.row.events,
                     faults=f"the {scale.outage_seconds:.0f} s Weaviate outage of weaviate-outage",
                     lost=sc.row.lost, stale=sc.row.stale, duplicated=sc.row.duplicated,
                     wall_seconds=sc.row.wall_seconds, recover_seconds=sc.row.recover_seconds[:1])
    bad = [s for s in during if not _accepted(s)]
    row.notes.append(f"searches sent during the outage: {_summary(during)}; deadline {sc.search_deadline_s:.0f} s")
    if not during:
        row.failures.append("no search was sent during the outage")
    if bad:
        row.failures.append(f"{len(bad)} of {len(during)} searches during the outage not answered 'unavailable' or "
                            f"'timeout' within their deadline: {_summary(bad)}")
    report.save(row, report_dir)
