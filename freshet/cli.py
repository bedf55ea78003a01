"""The ``freshet`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from freshet.errors import ConfigError, FreshetError, StackError
from freshet.log import configure_logging
from freshet.settings import Settings

SERVICE_CHOICE = click.Choice(["kafka", "weaviate", "indexer", "query"])
SEARCH_MODES = ("vector", "keyword", "hybrid")


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """freshet: keep a Weaviate index fresh from Kafka change events, and search it over Kafka."""
    settings = Settings()
    configure_logging(settings.log_level)
    if not settings.kafka_bootstrap:  # a local cluster: every broker, and its replication settings
        from ops.cluster import cluster_settings, load

        layout = load(settings.home)
        settings = cluster_settings(settings, layout) if layout else settings
    ctx.obj = settings


def _active(settings: Settings) -> Settings:
    """The settings of the active index generation (its collection, state table, model and chunker),
    as every worker adopts them at start; ``settings`` themselves before the first freshet reindex."""
    from workers.generation import adopt, read_generations

    active, _ = read_generations(settings)
    return adopt(settings, "indexer", active)


def _fail(exc: FreshetError) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    sys.exit(1)


@main.command()
@click.argument("role", type=click.Choice(["indexer", "query"]))
@click.pass_obj
def worker(settings: Settings, role: str) -> None:
    """Run one worker in the foreground (what a deployment or docker-compose runs)."""
    from streams.worker import run

    try:
        run(settings, role)  # type: ignore[arg-type]
    except FreshetError as exc:
        _fail(exc)


@main.group()
def stack() -> None:
    """Manage the local stack: Kafka, Weaviate and the workers (one of each, or a cluster: docs/cluster.md)."""


_COUNT = "(default: as the stack was last started, else 1)"


@stack.command("up")
@click.option("--only", "only", multiple=True, type=SERVICE_CHOICE, help="Start only these services.")
@click.option("--brokers", type=click.IntRange(1, 9), help=f"Kafka brokers, each also a KRaft controller {_COUNT}.")
@click.option("--weaviate-nodes", type=click.IntRange(1, 9), help=f"Weaviate nodes {_COUNT}.")
@click.option("--indexers", type=click.IntRange(1, 9), help=f"Indexer workers {_COUNT}.")
@click.option("--query-workers", type=click.IntRange(1, 9), help=f"Query workers {_COUNT}.")
@click.option("--secure/--plain", default=None,
              help="Kafka with TLS, SCRAM users and ACLs (docs/security.md), or without (default: as the stack "
                   "was last started, else plain). Fixed once the broker's data exists.")
@click.pass_obj
def stack_up(settings: Settings, only: tuple[str, ...], brokers: int | None, weaviate_nodes: int | None,
             indexers: int | None, query_workers: int | None, secure: bool | None) -> None:
    """Install what is missing and start the services in the background."""
    from ops.cluster import requested_shape
    from ops.stack import SERVICES, Stack

    try:
        shape = requested_shape(settings.home, brokers=brokers, weaviate_nodes=weaviate_nodes, indexers=indexers,
                                query_workers=query_workers, secure=secure)
        st = Stack(settings, shape)
        st.up(only or SERVICES)
    except StackError as exc:
        _fail(exc)
    _print_status(st)


@stack.command("install")
@click.option("--browser", is_flag=True, help="Also install headless Chromium (Debian) for the browser test.")
@click.pass_obj
def stack_install(settings: Settings, browser: bool) -> None:
    """Fetch the Kafka jars and build the Weaviate binary into the cache, if missing."""
    from freshet.settings import KAFKA_VERSION, WEAVIATE_VERSION
    from ops import install

    try:
        click.echo(f"Kafka {KAFKA_VERSION}: {install.ensure_kafka(settings.cache_dir, KAFKA_VERSION)}")
        click.echo(f"Weaviate {WEAVIATE_VERSION}: {install.ensure_weaviate(settings.cache_dir, WEAVIATE_VERSION)}")
        if browser:
            click.echo(f"Chromium: {install.ensure_chromium(settings.cache_dir)}")
    except StackError as exc:
        _fail(exc)


@stack.command("down")
@click.pass_obj
def stack_down(settings: Settings) -> None:
    """Stop every service of the local stack (every node and worker of its saved shape)."""
    from ops.stack import Stack

    try:
        Stack(settings).down()
    except StackError as exc:
        _fail(exc)


@stack.command("clean")
@click.pass_obj
def stack_clean(settings: Settings) -> None:
    """Stop everything and wipe all local data (Kafka logs, Weaviate data, worker state, logs, shape)."""
    from ops.stack import Stack

    try:
        Stack(settings).clean()
    except StackError as exc:
        _fail(exc)


@stack.command("status")
@click.option("--check", is_flag=True, help="Exit non-zero unless every service is healthy.")
@click.pass_obj
def stack_status(settings: Settings, check: bool) -> None:
    """Report each node's and worker's health, and the versions the servers report."""
    from ops.stack import Stack

    try:
        healthy = _print_status(Stack(settings))
    except StackError as exc:
        _fail(exc)
        return
    if check and not healthy:
        sys.exit(1)


def _print_status(st: Any) -> bool:
    ok = True
    statuses = st.status()
    width = max(9, *(len(s.service) for s in statuses))
    for s in statuses:
        mark = click.style("up  ", fg="green") if s.healthy else click.style("down", fg="red")
        click.echo(f"{mark} {s.service:<{width}} {s.detail}")
        ok = ok and s.healthy
    s = st.s
    click.echo(f"dashboard: {s.worker_url('query', '/dashboard')}")
    click.echo(f"metrics:   {s.worker_url('indexer', '/metrics')}  {s.worker_url('query', '/metrics')}")
    click.echo(f"logs: {st.home / 'logs'}")
    return ok


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait/--no-wait", default=False, help="Block until every event is applied.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait with --wait.")
@click.pass_obj
def publish(settings: Settings, file: Path, wait: bool, timeout: float) -> None:
    """Publish change events from a JSON-lines file to the changes topic."""
    from freshet.publishing import load_events, publish_events

    try:
        events = load_events(file)
        publish_events(settings, events, wait=wait, timeout=timeout)
    except FreshetError as exc:
        _fail(exc)


@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--glob", "globs", multiple=True, metavar="PATTERN",
              help="Files of a directory to publish, matched on their relative path (repeatable; default "
                   "*.md, *.markdown, *.txt).")
@click.option("--prefix", default="", help="Put before each file's relative path to make its doc_id.")
@click.option("--tenant", default=None, help="Tenant of every document (a JSON line's own tenant wins).")
@click.option("--source", "source_name", default=None,
              help="metadata.source of every event, which --delete-missing goes by (default: the absolute path).")
@click.option("--version-field", default=None,
              help="JSON lines: the field holding the version (integer or RFC 3339 time); default the line number.")
@click.option("--strict", is_flag=True, help="Stop at the first bad file or line instead of skipping it.")
@click.option("--delete-missing", is_flag=True,
              help="Also delete the documents this source published before that it holds no more.")
@click.option("--skip-unchanged/--republish", default=True, show_default=True,
              help="Read the changes topic first and send only documents newer than their version there.")
@click.option("--restart", is_flag=True, help="Ignore (and remove) the checkpoint of an interrupted run.")
@click.option("--checkpoint-every", default=100, show_default=True, type=click.IntRange(min=1),
              help="Save the position every N acknowledged events.")
@click.option("--wait/--no-wait", default=False, help="Block until every event is applied.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait with --wait.")
@click.option("--stop-after", type=click.IntRange(min=1), default=None, hidden=True,
              help="Stop after N published events, keeping the checkpoint (tests resumption).")
@click.pass_obj
def backfill(settings: Settings, source: Path, globs: tuple[str, ...], prefix: str, tenant: str | None,
             source_name: str | None, version_field: str | None, strict: bool, delete_missing: bool,
             skip_unchanged: bool, restart: bool, checkpoint_every: int, wait: bool, timeout: float,
             stop_after: int | None) -> None:
    """Publish a directory of Markdown/text files, or a JSON-lines file of documents, as change events;
    an interrupted run resumes where it stopped (docs/backfill.md)."""
    from freshet.backfill import DEFAULT_GLOBS, Options, run_backfill

    opts = Options(globs=globs or DEFAULT_GLOBS, prefix=prefix, tenant=tenant, source=source_name,
                   version_field=version_field, strict=strict, delete_missing=delete_missing,
                   skip_unchanged=skip_unchanged, restart=restart, wait=wait, timeout=timeout,
                   checkpoint_every=checkpoint_every, stop_after=stop_after)
    try:
        summary = run_backfill(settings, source, opts)
    except FreshetError as exc:
        _fail(exc)
        return
    click.echo(summary.line())


@main.command()
@click.argument("query")
@click.option("--mode", type=click.Choice(["hybrid", "vector", "keyword"]), default="hybrid", show_default=True)
@click.option("-k", "--top-k", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--alpha", type=click.FloatRange(0, 1), default=None, help="Hybrid weight of the vector side.")
@click.option("--filter", "filters", multiple=True, metavar="COND",
              help="FIELD=V, FIELD!=V, FIELD>=V (>, <, <=), or 'FIELD in V1,V2'; repeat to AND them. "
                   "Or a JSON filter object (see the request contract).")
@click.option("--tenant", default=None)
@click.option("--group-by-doc", is_flag=True, help="One hit per document (its best chunk).")
@click.option("--json", "as_json", is_flag=True, help="Print the reply as JSON.")
@click.option("--timeout", default=30.0, show_default=True)
@click.pass_obj
def search(settings: Settings, query: str, mode: str, top_k: int, alpha: float | None, filters: tuple[str, ...],
           tenant: str | None, group_by_doc: bool, as_json: bool, timeout: float) -> None:
    """Search over the request topic and print the reply."""
    from freshet.client import SearchClient
    from freshet.publishing import print_reply
    from schemas.search import filter_from_cli

    fields: dict[str, Any] = {"mode": mode, "top_k": top_k, "tenant": tenant, "group_by_doc": group_by_doc}
    if alpha is not None:
        fields["alpha"] = alpha
    try:
        if filters:
            fields["filters"] = filter_from_cli(filters)
        client = SearchClient(settings.kafka_access, request_topic=settings.topic_requests,
                              reply_topic=settings.topic_replies, timeout=timeout)
        try:
            reply = client.search(query, **fields)
        finally:
            client.close()
    except (FreshetError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(reply.model_dump(mode="json"), indent=2))
    else:
        print_reply(query, reply)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def stats(settings: Settings, as_json: bool) -> None:
    """The running indexer's cumulative counters (since it started)."""
    from freshet.publishing import indexer_stats

    try:
        counters = indexer_stats(settings)
    except FreshetError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(counters))
    else:
        for name, value in counters.items():
            click.echo(f"{name:<16} {value:>12,}")


@main.command()
@click.option("--vectors", is_flag=True, help="Also re-embed every chunk and compare with the stored vectors.")
@click.option("--repair", is_flag=True, help="Rewrite what Weaviate lacks and delete what it should not hold, "
              "then verify again (docs/repair.md).")
@click.pass_obj
def verify(settings: Settings, vectors: bool, repair: bool) -> None:
    """Check the index equals a fresh load of the latest versions; exit 1 on any difference. Checks the
    active generation (freshet reindex), as the workers serve it."""
    from freshet.verify import run_repair, run_verify

    settings = _active(settings)

    if repair:
        try:
            report = run_repair(settings)
        except FreshetError as exc:
            _fail(exc)
            return
        for line in report.problems[:50]:
            click.secho(f"  {line}", fg="red")
        for line in report.skipped[:50]:
            click.secho(f"  skipped {line}", fg="yellow")
        click.echo(f"repair: {report.rewritten} object(s) rewritten, {report.deleted} deleted; vectors: "
                   f"{report.reused} reused from Weaviate, {report.cached} from the cache, {report.embedded} "
                   f"chunk(s) embedded; {len(report.skipped)} document(s) skipped; {report.seconds:.1f} s")
    # after a repair, verify again: the index must now equal a fresh load (unless something was skipped)
    problems = [] if repair and not report.problems and not vectors else run_verify(settings, vectors=vectors)
    for line in problems[:50]:
        click.secho(f"  {line}", fg="red")
    if problems:
        click.secho(f"verify: {len(problems)} difference(s)", fg="red", bold=True)
        sys.exit(1)
    click.secho("verify: the index equals a fresh load of the latest versions"
                + (" (ids, content and vectors)" if vectors else " (ids and content)"), fg="green")


@main.group()
def dlq() -> None:
    """Dead letters: list them, show one, replay them to the changes topic (docs/dead-letters.md)."""


@dlq.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as a JSON array.")
@click.pass_obj
def dlq_list(settings: Settings, as_json: bool) -> None:
    """The dead letters grouped by reason and source topic: counts, first and last positions, samples."""
    from dataclasses import asdict

    from freshet.dlq import read_dead_letters
    from workers.dead_letters import group_letters

    try:
        groups = group_letters(read_dead_letters(settings))
    except FreshetError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps([asdict(g) for g in groups], indent=2))
        return
    click.echo(f"{sum(g.count for g in groups)} dead letter(s) on {settings.topic_dead_letter}")
    for g in groups:
        sources = ", ".join(f"p{p} {lo}-{hi}" for p, (lo, hi) in sorted(g.source_offsets.items()))
        extra = "".join([f", {g.truncated} truncated" if g.truncated else "",
                         f", {g.from_replays} from replays" if g.from_replays else ""])
        click.secho(f"\n{g.reason} from {g.source_topic or '?'}: {g.count}{extra}", bold=True)
        click.echo(f"  dead letters {g.first} ({g.first_at or 'no time'}) .. {g.last} ({g.last_at or 'no time'})")
        click.echo(f"  source offsets {sources}")
        click.echo(f"  error: {g.error_sample}")
        click.echo(f"  value: {g.value_sample}")


@dlq.command("show")
@click.argument("position")
@click.option("--json", "as_json", is_flag=True, help="Print it as one JSON object.")
@click.pass_obj
def dlq_show(settings: Settings, position: str, as_json: bool) -> None:
    """One dead letter in full. POSITION is PARTITION:OFFSET on the dead-letter topic, or OFFSET alone
    when only one partition has that offset."""
    from freshet.dlq import as_json as letter_json
    from freshet.dlq import read_dead_letters, show_lines
    from workers.dead_letters import resolve_position

    try:
        letter = resolve_position(position, read_dead_letters(settings), settings.topic_dead_letter)
    except FreshetError as exc:
        _fail(exc)
        return
    click.echo(json.dumps(letter_json(letter), indent=2, ensure_ascii=False) if as_json
               else "\n".join(show_lines(letter, settings.topic_dead_letter)))


@dlq.command("replay")
@click.option("--reason", "reasons", multiple=True, help="Only dead letters of this reason (repeatable).")
@click.option("--since", default=None, help="Only dead letters written since: ISO 8601 time, or 30m, 2h, 7d ago.")
@click.option("--source-topic", "source_topics", multiple=True, help="Only dead letters from this topic (repeatable).")
@click.option("--allow-source", "allowed", multiple=True,
              help="Also replay dead letters read from this input topic (repeatable; the changes topic always is).")
@click.option("--again", is_flag=True, help="Send dead letters replayed before once more (the version rules make "
                                            "an applied one a no-op).")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; publish nothing.")
@click.pass_obj
def dlq_replay(settings: Settings, reasons: tuple[str, ...], since: str | None, source_topics: tuple[str, ...],
               allowed: tuple[str, ...], again: bool, dry_run: bool) -> None:
    """Publish matching dead letters to the changes topic again (original key, value and headers, plus
    freshet.replay.of); truncated ones and those replayed before are skipped."""
    from datetime import UTC, datetime

    from freshet.dlq import publish_replays, read_dead_letters, read_ledger
    from workers.dead_letter_replay import Selection, parse_since, plan_replay, summary_line

    try:
        selection = Selection(frozenset(reasons), frozenset(source_topics),
                              parse_since(since, datetime.now(UTC)) if since else None)
        plan = plan_replay(read_dead_letters(settings), read_ledger(settings), selection,
                           dead_letter_topic=settings.topic_dead_letter,
                           replayable=frozenset({settings.topic_changes, *allowed}), again=again)
        if dry_run:
            for d in plan.send[:50]:
                click.echo(f"  {d.position}  {d.reason:<16} {d.origin}")
        else:
            publish_replays(settings, plan.send)
    except FreshetError as exc:
        _fail(exc)
        return
    click.echo(summary_line(plan, dry_run=dry_run))


@main.group()
def tenant() -> None:
    """Tenants: delete one (README, Tenants)."""


@tenant.command("delete")
@click.argument("name")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Block until the indexer has applied every delete.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to wait with --wait.")
@click.confirmation_option(prompt="Delete every document of this tenant?")
@click.pass_obj
def tenant_delete(settings: Settings, name: str, wait: bool, timeout: float) -> None:
    """Delete tenant NAME: drop its Weaviate shard (with FRESHET_MULTI_TENANCY=true), then publish a
    delete event for each of its documents, so the indexer's state forgets them."""
    from freshet.tenants import delete_tenant

    try:
        done = delete_tenant(_active(settings), name, wait=wait, timeout=timeout)
    except FreshetError as exc:
        _fail(exc)
        return
    shard = ("no shard (FRESHET_MULTI_TENANCY=false)" if done.shard is None
             else f"shard {done.shard!r} {'dropped' if done.shard_dropped else 'was not there'}")
    click.echo(f"tenant {done.tenant!r}: {shard}; {done.documents} delete event(s) published"
               + (" and applied" if wait else ""))


@main.command()
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="A setting of the new generation (model, model_backend, chunk_min_chars, embed_title, "
                   "embed_headings, metadata_fields, multi_tenancy); FRESHET_ names work too. Repeatable.")
@click.option("--builders", type=click.IntRange(min=1), default=1, show_default=True,
              help="Indexers that build the new generation (they share its changes partitions).")
@click.option("--no-switch", is_flag=True, help="Build and keep current, but do not switch to it yet.")
@click.option("--timeout", type=float, default=None, help="Give up (resumable) after this many seconds of building.")
@click.option("--status", is_flag=True, help="Print the generations and a building one's progress; change nothing.")
@click.pass_obj
def reindex(settings: Settings, sets: tuple[str, ...], builders: int, no_switch: bool, timeout: float | None,
            status: bool) -> None:
    """Re-embed into a new index generation without downtime: build it beside the active one, switch every
    query worker to it once caught up, delete the old one after the grace period (README, Reindex)."""
    from freshet.reindex import parse_sets, run_reindex, status_lines

    try:
        if status:
            click.echo("\n".join(status_lines(settings)))
            return
        report = run_reindex(settings, parse_sets(sets), builders=builders, switch=not no_switch, timeout=timeout)
    except FreshetError as exc:
        _fail(exc)
        return
    for note in report.notes:
        click.echo(note)
    click.echo(f"generation {report.generation} ({report.collection}) replaces {report.previous}: "
               f"{report.documents} documents, {report.chunks_embedded} chunks embedded and {report.chunks_reused} "
               f"reused (embedded share {report.embedded_share:.2f}), {report.seconds:.1f} s"
               + ("; switched" if report.switched else "") + ("; old collection deleted" if report.dropped else ""))


@main.command()
@click.option("--to-partitions", type=click.IntRange(min=1), required=True, help="Partitions of the new layout.")
@click.option("--to-changes-topic", required=True, help="The new changes topic (FRESHET_TOPIC_CHANGES).")
@click.option("--to-applied-topic", required=True, help="The new applied topic (FRESHET_TOPIC_APPLIED).")
@click.option("--to-group-prefix", required=True,
              help="The new FRESHET_CONSUMER_GROUP_PREFIX (names the new state changelog).")
@click.option("--dry-run", is_flag=True, help="Check and count; create and write nothing.")
@click.option("--create-topics-only", is_flag=True, help="Only create the new topics (before producers use them).")
@click.pass_obj
def relayout(settings: Settings, to_partitions: int, to_changes_topic: str, to_applied_topic: str,
             to_group_prefix: str, dry_run: bool, create_topics_only: bool) -> None:
    """Move the drained layout of these settings to new topics and a new partition count, copying states,
    applied records and latest events: nothing is embedded again (docs/operations.md, Partitions)."""
    from freshet.relayout import create_topics, report
    from freshet.relayout import relayout as run_relayout
    from workers.relayout import Layout

    target = Layout(to_group_prefix, to_changes_topic, to_applied_topic, to_partitions)
    try:
        if create_topics_only:
            click.echo(f"created: {', '.join(create_topics(settings, target)) or 'nothing (all exist)'}")
            return
        plan = run_relayout(settings, target, dry_run=dry_run)
    except FreshetError as exc:
        _fail(exc)
        return
    for line in report(settings, target, plan, dry_run=dry_run):
        click.echo(line)


@main.group(invoke_without_command=True)
@click.option("--only", multiple=True, type=click.Choice(["bulk", "edits", "freshness", "query", "hnsw"]),
              help="Run only these suites (repeatable); default all.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON to this file.")
@click.pass_context
def bench(ctx: click.Context, only: tuple[str, ...], as_json: bool, out: Path | None) -> None:
    """Benchmarks that print a report. Without a command: every suite, one table (docs/benchmarks.md)."""
    if ctx.invoked_subcommand is None:
        from ops.bench.suite import main as run_suite

        run_suite(ctx.obj, only, as_json, out)


def _register_bench_commands() -> None:
    """The benchmark commands, one module of ``ops.bench`` each (``freshet bench`` alone runs the suites)."""
    from ops.bench.bulk import bulk_command
    from ops.bench.encode import encode_command
    from ops.bench.freshness import freshness_command
    from ops.bench.fusion import fusion_command
    from ops.bench.hnsw import hnsw_command
    from ops.bench.query import query_command
    from ops.bench.scale import scale_command
    from ops.bench.throughput import throughput_command

    for name, command in (("bulk", bulk_command), ("encode", encode_command), ("freshness", freshness_command),
                          ("fusion", fusion_command),
                          ("hnsw", hnsw_command), ("query", query_command), ("scale", scale_command),
                          ("throughput", throughput_command)):
        bench.add_command(command, name)


_register_bench_commands()


@bench.command("edits")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--keep", is_flag=True, help="Keep the benchmark's topics and collections afterwards.")
@click.option("--plan", "planned", is_flag=True,
              help="Only plan the edit cost of each chunk context (title, headings) from the chunking: no services.")
@click.pass_obj
def bench_edits(settings: Settings, file: Path, as_json: bool, keep: bool, planned: bool) -> None:
    """Replay an edit history through the real pipeline and LangChain's indexing API; compare the cost."""
    from ops.bench.edits import main as run_bench

    try:
        sys.exit(run_bench(settings, file, as_json=as_json, keep=keep, planned=planned))
    except FreshetError as exc:
        _fail(exc)


def _modes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    modes = tuple(dict.fromkeys(m.strip() for m in value.split(",") if m.strip()))
    unknown = [m for m in modes if m not in SEARCH_MODES]
    if unknown or not modes:
        raise click.BadParameter(f"{value!r}: give a comma-separated list of {', '.join(SEARCH_MODES)}")
    return modes


@main.command("eval")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--modes", default=",".join(SEARCH_MODES), show_default=True, callback=_modes,
              help="Search modes to evaluate, comma-separated.")
@click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=None,
              help="Hybrid weight of the vector side; default: the search request's default.")
@click.option("--limit-queries", type=click.IntRange(min=1), default=None,
              help="Evaluate only the first N judged queries.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--keep", is_flag=True, help="Keep the evaluation's topics and collection afterwards.")
@click.option("--sweep", "do_sweep", is_flag=True,
              help="Also run hybrid search over a grid of fusions and alphas, each nDCG@10 with a 95 % bootstrap "
                   "interval over queries and its paired interval against the better single mode.")
@click.pass_obj
def eval_(settings: Settings, directory: Path, modes: tuple[str, ...], alpha: float | None,
          limit_queries: int | None, as_json: bool, keep: bool, do_sweep: bool) -> None:
    """nDCG@10, Recall@100 and MRR@10 of the real pipeline on a BEIR dataset, beside the exact ranking."""
    from ops.bench.evaluation import main as run_eval

    try:
        sys.exit(run_eval(settings, directory, modes=modes, alpha=alpha, limit_queries=limit_queries,
                          as_json=as_json, keep=keep, do_sweep=do_sweep))
    except FreshetError as exc:
        _fail(exc)


@main.group()
def model() -> None:
    """The embedding model: its ONNX exports."""


@model.command("export")
@click.option("--variant", "variants", type=click.Choice(["fp32", "int8"]), multiple=True,
              help="Which export (default: both).")
@click.pass_obj
def model_export(settings: Settings, variants: tuple[str, ...]) -> None:
    """Export the model for the onnx and onnx-int8 backends into the cache directory (what their
    first use does; `make install` runs it). Nothing is downloaded; an existing export is kept."""
    from workers.bert import plain_bert
    from workers.embedding import default_model_path
    from workers.onnx_backend import ensure_exported

    path = Path(settings.model) if settings.model else default_model_path()
    why = plain_bert(path) if path.is_dir() else "not a local model directory"
    if why is not None:
        _fail(ConfigError(f"the onnx backends cannot run {settings.model or path}: {why}"))
    for variant in variants or ("fp32", "int8"):
        click.echo(f"{variant}: {ensure_exported(path, settings.cache_dir, variant)}")  # type: ignore[arg-type]


@main.command()
def schemas() -> None:
    """Write the JSON Schema files of the topic contracts to schemas/json/."""
    from schemas.jsonschema import write_all

    for path in write_all():
        click.echo(f"wrote {path}")


@main.command()
@click.pass_obj
def demo(settings: Settings) -> None:
    """Index this project's documentation through Kafka, then search it over Kafka."""
    from freshet.demo import run_demo

    try:
        run_demo(settings)
    except FreshetError as exc:
        _fail(exc)


if __name__ == "__main__":
    main()
