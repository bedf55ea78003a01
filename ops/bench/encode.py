"""``freshet bench encode``: the model's own encode rate per batch size, over the whole corpus at once
and in groups the size of the indexer's micro-batches.

The indexer sorts the texts of one micro-batch by length and cuts them into batches of
``FRESHET_EMBED_BATCH_SIZE``; the bulk baseline sorts the whole corpus. How much that costs depends
on the batch size: with long batches, texts of different lengths share a batch and pad to the
longest. This measures both, per batch size, in one process (no Kafka, no Weaviate), on the chunk
texts the indexer would embed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from freshet.settings import Settings
from ops.bench import exact
from ops.bench.bulk import DEFAULT_CORPUS
from workers.beir import change_event, read_corpus
from workers.embedding import SentenceTransformerEmbedder


def rates(base: Settings, corpus: Path, docs: int, batch_sizes: list[int], group: int) -> list[dict[str, float]]:
    """Per batch size: chunks per second over all texts at once, and in consecutive groups of ``group``."""
    events = [change_event(p) for p in read_corpus(corpus / "corpus.jsonl")[:docs]]
    first = SentenceTransformerEmbedder.for_settings(base)
    chunks = exact.chunk_corpus(events, first, min_chars=base.chunk_min_chars, context=base.chunk_context)
    texts = list({c.content_hash: c.embed_text for _, c in chunks}.values())
    out: list[dict[str, float]] = []
    for size in batch_sizes:
        embedder = SentenceTransformerEmbedder(base.model, device=base.model_device, batch_size=size,
                                               backend=base.model_backend, cache_dir=base.cache_dir)
        embedder.embed(texts[:64])  # warm-up
        started = time.perf_counter()
        embedder.embed(texts)
        whole = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(0, len(texts), group):
            embedder.embed(texts[i:i + group])
        grouped = time.perf_counter() - started
        out.append({"batch_size": size, "texts": len(texts), "whole_per_s": round(len(texts) / whole, 1),
                    "groups_per_s": round(len(texts) / grouped, 1), "ratio": round(whole / grouped, 3)})
        click.echo(f"batch {size}: {out[-1]['whole_per_s']} chunks/s over all {len(texts)} texts, "
                   f"{out[-1]['groups_per_s']} in groups of {group} ({out[-1]['ratio']})", err=True)
    return out


@click.command("encode")
@click.argument("corpus", required=False, default=DEFAULT_CORPUS,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--docs", type=click.IntRange(min=1), default=1600, show_default=True)
@click.option("--batch-sizes", default="32,16,8,4", show_default=True, help="Comma-separated batch sizes.")
@click.option("--group", type=click.IntRange(min=1), default=64, show_default=True,
              help="Texts per group (the indexer's micro-batch, FRESHET_INDEX_BATCH_SIZE).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.pass_obj
def encode_command(settings: Settings | None, corpus: Path, docs: int, batch_sizes: str, group: int,
                   as_json: bool) -> None:
    """The model's encode rate per batch size: all texts at once against groups of micro-batch size."""
    sizes = [int(x) for x in batch_sizes.split(",") if x.strip()]
    result = rates(settings or Settings(), corpus, docs, sizes, group)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"freshet bench encode ({os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f})")
    click.echo(f"| batch size | all texts at once, chunks/s | groups of {group}, chunks/s | ratio |")
    click.echo("|---:|---:|---:|---:|")
    for r in result:
        click.echo(f"| {r['batch_size']:.0f} | {r['whole_per_s']} | {r['groups_per_s']} | {r['ratio']} |")
