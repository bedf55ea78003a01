"""``freshet bench edits FILE``: what an edit history costs freshet, beside LangChain's indexing API.

Runs the real pipeline (Kafka, a Faust indexer worker, the model, Weaviate) on a pipeline of its
own (own topics, collection and consumer group on the running stack's Kafka and Weaviate): the
snapshot events first, then every edit, one at a time (each published once the previous one is
applied, so every version is paid for, as in the LangChain replay). It reads the indexer's
counters before and after the edits, runs ``freshet verify`` on the result, loads the final
versions into a second, empty collection and checks both hold the same chunk ids and vectors.
The LangChain figures come from :mod:`ops.bench.langchain_baseline` on the same file.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from freshet.client import AppliedWatcher, DocumentPublisher
from freshet.errors import FreshetError
from freshet.publishing import indexer_stats, publish_events
from freshet.settings import Settings
from freshet.verify import read_objects, run_verify
from ops.bench import langchain_baseline as lc
from ops.stack import Stack, drop_pipeline, isolated
from schemas.change import ChangeEvent
from workers.chunking import Context, chunk_document
from workers.embedding import default_model_path


def _token_counter() -> Callable[[str], int]:
    """The bundled model's tokenizer (special tokens included, as the embedder counts)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return lambda text: len(tok.encode(text).ids)


def _replay_one_by_one(settings: Settings, events: list[ChangeEvent], timeout: float = 120.0) -> float:
    """Publish each event once the previous one is applied; return the seconds it took."""
    watcher = AppliedWatcher(settings.kafka_access, settings.topic_applied)
    publisher = DocumentPublisher(settings.kafka_access, settings.topic_changes)
    started = time.monotonic()
    try:
        for ev in tqdm(events, desc="edits, one at a time", unit="event"):
            publisher.publish(ev).result(timeout=30)
            if not watcher.wait({ev.key: ev.version}, timeout):
                raise FreshetError(f"{ev.doc_id} v{ev.version} not applied within {timeout:.0f}s")
    finally:
        publisher.close()
        watcher.close()
    return time.monotonic() - started


def _final_versions(events: list[ChangeEvent]) -> list[ChangeEvent]:
    last: dict[str, ChangeEvent] = {}
    for ev in events:
        last[ev.key] = ev
    return [ev for ev in last.values() if ev.op == "upsert"]


def _same_index(a: Settings, b: Settings, tolerance: float = 1e-4) -> tuple[bool, str]:
    objs_a, vec_a = read_objects(a, vectors=True)
    objs_b, vec_b = read_objects(b, vectors=True)
    if set(vec_a) != set(vec_b):
        return False, f"chunk ids differ: {len(set(vec_a) - set(vec_b))} only in the replay, " \
                      f"{len(set(vec_b) - set(vec_a))} only in the fresh load"
    worst = max((max(abs(x - y) for x, y in zip(vec_a[i], vec_b[i], strict=True)) for i in vec_a), default=0.0)
    ok = worst <= tolerance
    return ok, f"{len(objs_a)} chunks, same ids, largest vector difference {worst:.1e}"


def run(base: Settings, path: Path, *, snapshot: int = lc.SNAPSHOT_EVENTS, keep: bool = False) -> dict[str, Any]:
    """Run the benchmark; return every figure (see :func:`print_report`)."""
    raw = lc.load_events(path)
    events = [ChangeEvent.model_validate(e) for e in raw]
    report: dict[str, Any] = {"file": str(path), "events": len(events), "snapshot_events": snapshot,
                              "edit_events": len(events) - snapshot}
    click.echo("LangChain baselines (in memory, counting embedding function) ...", err=True)
    report["new_paragraph_chars"] = lc.new_paragraph_chars(raw, start=snapshot)
    count_tokens = _token_counter()
    report["langchain"] = {f"{size},{overlap}": lc.langchain_edit_cost(raw, size, overlap, start=snapshot,
                                                                       count_tokens=count_tokens)
                           for size, overlap in ((1000, 200), (500, 50))}
    report["full_reembed_500_50"] = lc.full_reembed_cost(raw, 500, 50, start=snapshot)

    Stack(base).up(["kafka", "weaviate"])
    home = Path(tempfile.mkdtemp(prefix="freshet-bench-"))
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    replay = isolated(base, tag, home / "replay", index_linger_seconds=0.05)
    fresh = isolated(base, tag + "-fresh", home / "fresh")
    stacks = [Stack(replay), Stack(fresh)]
    try:
        stacks[0].up(["indexer"])
        publish_events(replay, events[:snapshot], wait=True, timeout=900, desc="snapshot")
        before = indexer_stats(replay)
        seconds = _replay_one_by_one(replay, events[snapshot:])
        after = indexer_stats(replay)
        report["freshet"] = {k: after[k] - before[k] for k in after} | {"seconds": round(seconds, 1)}
        click.echo("verify ...", err=True)
        problems = run_verify(replay)
        report["verify"] = {"ok": not problems, "problems": problems[:20]}
        stacks[1].up(["indexer"])
        publish_events(fresh, _final_versions(events), wait=True, timeout=900, desc="fresh load of final versions")
        same, detail = _same_index(replay, fresh)
        report["fresh_load_equal"] = {"ok": same, "detail": detail}
    finally:
        for st in stacks:
            st.down(["indexer"])
        if not keep:
            for s in (replay, fresh):
                drop_pipeline(s)
    return report


#: The chunk contexts ``freshet bench edits --plan`` compares (``FRESHET_EMBED_TITLE`` / ``_HEADINGS``).
CONTEXTS = {"none": Context(), "title first": Context(title="first"), "title all": Context(title="all"),
            "headings": Context(headings=True), "title all + headings": Context(title="all", headings=True)}


def first_heading(content: str | None) -> str | None:
    """The text of a Markdown page's first H1 (``# Title``): the title a producer would likely send."""
    for line in (content or "").splitlines():
        if line.startswith("# "):
            return line[2:].strip() or None
    return None


def planned_cost(events: Sequence[ChangeEvent], context: Context, count_tokens: Callable[[str], int], *,
                 min_chars: int, max_tokens: int = 256, start: int = lc.SNAPSHOT_EVENTS,
                 h1_titles: bool = False) -> dict[str, int]:
    """What the indexer would embed over ``events[start:]``, from its chunking alone (no services);
    with ``h1_titles``, an event without a title gets its page's first H1 as one.

    A chunk is embedded when its content hash is neither in its document's previous version nor among
    the vectors embedded before (the indexer's cache holds 50,000; this history has fewer chunks), so
    the figure follows the real pipeline's (docs/benchmarks.md gives both).
    """
    previous: dict[str, set[str]] = {}
    embedded: set[str] = set()
    chars = chunks = 0
    for position, ev in enumerate(events):
        if ev.op == "delete":
            previous.pop(ev.doc_id, None)
            continue
        title = ev.title or (first_heading(ev.content) if h1_titles else None)
        cut = chunk_document(ev.content or "", content_type=ev.content_type, max_tokens=max_tokens,
                             count_tokens=count_tokens, min_chars=min_chars, title=title, context=context)
        hashes = {c.content_hash: c for c in cut}
        if position >= start:
            seen = previous.get(ev.doc_id, set())
            new = [c for h, c in hashes.items() if h not in seen and h not in embedded]
            chars += sum(len(c.embed_text) for c in new)
            chunks += len(new)
        previous[ev.doc_id] = set(hashes)
        embedded |= set(hashes)
    return {"chars": chars, "chunks": chunks}


def plan(base: Settings, path: Path, *, snapshot: int = lc.SNAPSHOT_EVENTS) -> dict[str, Any]:
    """Edit cost of each chunk context, planned from the chunking (see :func:`planned_cost`)."""
    raw = lc.load_events(path)
    events = [ChangeEvent.model_validate(e) for e in raw]
    count_tokens = _token_counter()
    new = lc.new_paragraph_chars(raw, start=snapshot)
    titled = sum(1 for ev in events if ev.title)
    rows = {name: planned_cost(tqdm(events, desc=f"planning: {name}", unit="event", leave=False), ctx, count_tokens,
                               min_chars=base.chunk_min_chars, start=snapshot)
            for name, ctx in CONTEXTS.items()}
    for name in ("title first", "title all"):  # as if each event's title were its page's first H1
        rows[f"{name} (title = first H1)"] = planned_cost(
            tqdm(events, desc=f"planning: {name}, H1 titles", unit="event", leave=False), CONTEXTS[name],
            count_tokens, min_chars=base.chunk_min_chars, start=snapshot, h1_titles=True)
    return {"file": str(path), "events": len(events), "snapshot_events": snapshot, "titled_events": titled,
            "new_paragraph_chars": new, "contexts": rows}


def print_plan(r: dict[str, Any]) -> None:
    new = r["new_paragraph_chars"]
    click.secho(f"\nPlanned edit cost of each chunk context over {r['events'] - r['snapshot_events']:,} edits of "
                f"{r['file']} ({r['titled_events']:,} events carry a title), as text given to the model:", bold=True)
    click.echo(f"  {'context':<30} {'chunks':>8} {'chars':>10} {'x new paragraphs':>17}")
    for name, row in r["contexts"].items():
        flag = "" if row["chars"] <= 1.5 * new else "  over the 1.5x budget"
        click.echo(f"  {name:<30} {row['chunks']:>8,} {row['chars'] / 1e6:>8.2f} M {row['chars'] / new:>16.2f}x{flag}")
    click.echo(f"  new paragraphs: {new / 1e6:.2f} M chars")


def print_report(r: dict[str, Any]) -> None:
    m = 1e6
    new = r["new_paragraph_chars"]
    f = r["freshet"]
    click.secho(f"\nEdit cost over {r['edit_events']:,} edits of {r['file']} (after {r['snapshot_events']} "
                "snapshot events), as text given to the embedding model:", bold=True)
    rows = [
        ("paragraphs new in each version (reference)", new, ""),
        ("freshet (real pipeline, every version applied)", f["chars_embedded"],
         f"{f['tokens_embedded']:,} tokens, {f['chunks_embedded']:,} chunks embedded, "
         f"{f['chunks_reused']:,} reused"),
        ("LangChain index() incremental, splitter (1000, 200)", r["langchain"]["1000,200"]["chars"],
         f"{r['langchain']['1000,200']['tokens']:,} tokens, {r['langchain']['1000,200']['texts']:,} chunks"),
        ("LangChain index() incremental, splitter (500, 50)", r["langchain"]["500,50"]["chars"],
         f"{r['langchain']['500,50']['tokens']:,} tokens, {r['langchain']['500,50']['texts']:,} chunks"),
        ("re-embed every chunk of every changed version (500, 50)", r["full_reembed_500_50"]["chars"], ""),
    ]
    for label, chars, detail in rows:
        click.echo(f"  {label:<58} {chars / m:6.2f} M chars  {chars / new:5.2f}x  {detail}")
    budget = 1.5 * new
    verdict = "within" if f["chars_embedded"] <= budget else "OVER"
    click.echo(f"  budget 1.5 x new paragraphs = {budget / m:.2f} M chars: freshet is {verdict} it")
    click.echo(f"  Weaviate: {f['chunks_written']:,} objects written, {f['chunks_updated']:,} updated, "
               f"{f['chunks_deleted']:,} deleted; {f['stale_skipped']} stale; {f['seconds']:.0f} s for the edits")
    v = r["verify"]
    click.echo(f"  freshet verify after the replay: {'passed' if v['ok'] else 'FAILED: ' + '; '.join(v['problems'])}")
    e = r["fresh_load_equal"]
    click.echo(f"  replayed index vs fresh load of the final versions: {'equal' if e['ok'] else 'DIFFERENT'} "
               f"({e['detail']})")


def main(base: Settings, path: Path, *, as_json: bool, keep: bool, planned: bool = False) -> int:
    if planned:
        result = plan(base, path)
        if as_json:
            click.echo(json.dumps(result, indent=2))
        else:
            print_plan(result)
        return 0
    report = run(base, path, keep=keep)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report)
    ok = report["verify"]["ok"] and report["fresh_load_equal"]["ok"]
    return 0 if ok else 1
