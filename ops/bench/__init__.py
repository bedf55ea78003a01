"""Benchmark-only tools: reference figures measured outside the indexer, never imported by it."""
