"""Benchmark-only tools: reference figures measured outside the indexer, never imported by it."""

from pathlib import Path

#: The shared datasets beside the repository (benchmarks may read them; ``make demo`` never does).
SHARED_DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
