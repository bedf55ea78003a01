"""The ``onnx`` and ``onnx-int8`` backends: exported here from the bundled weights, cached, and faithful.

The export runs once into a fresh cache directory of this module (a few seconds), so these tests
check the export itself, not one left behind by an earlier run. ``onnx`` must compute the ``bert``
backend's vectors to float precision and the same token counts; ``onnx-int8`` approximates them
(what that costs in retrieval quality is measured by ``freshet bench fusion``, docs/benchmarks.md),
and its vectors must never be mistaken for torch's in a cache of vectors.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from freshet.errors import ConfigError
from tests.unit.test_bert_backend import AWKWARD, _model_copy, _passages
from workers.embedding import EmbeddingCache, SentenceTransformerEmbedder
from workers.onnx_backend import ensure_exported, export_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def three(cache_dir: Path) -> dict[str, SentenceTransformerEmbedder]:
    out = {b: SentenceTransformerEmbedder(backend=b, batch_size=16, cache_dir=cache_dir)  # type: ignore[arg-type]
           for b in ("bert", "onnx", "onnx-int8")}
    assert {b: e.backend for b, e in out.items()} == {b: b for b in out}
    return out


def test_onnx_computes_the_bert_backends_vectors_and_token_counts(
        three: dict[str, SentenceTransformerEmbedder]) -> None:
    texts = AWKWARD + _passages(120)
    bert, onnx = np.array(three["bert"].embed(texts)), np.array(three["onnx"].embed(texts))
    assert np.abs(bert - onnx).max() < 2e-5, f"largest difference {np.abs(bert - onnx).max():.2e}"
    assert [three["onnx"].count_tokens(t) for t in texts] == [three["bert"].count_tokens(t) for t in texts]
    assert (three["onnx"].max_tokens, three["onnx"].dimension) == (256, 384)


def test_int8_approximates_them_with_unit_vectors(three: dict[str, SentenceTransformerEmbedder]) -> None:
    texts = AWKWARD + _passages(120)
    bert, int8 = np.array(three["bert"].embed(texts)), np.array(three["onnx-int8"].embed(texts))
    cosine = (bert * int8).sum(axis=1)
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert cosine.min() > 0.95 and cosine.mean() > 0.985, (cosine.min(), cosine.mean())
    assert np.abs(bert - int8).max() > 1e-3, "int8 weights that change nothing: was the graph quantized?"


def test_the_onnx_backends_vectors_are_never_served_as_torchs(three: dict[str, SentenceTransformerEmbedder]) -> None:
    cache = EmbeddingCache(10)
    cache.put(three["bert"].model_id, "h", [1.0])
    assert cache.get(three["onnx"].model_id, "h") is None
    assert cache.get(three["onnx-int8"].model_id, "h") is None
    assert len({e.model_id for e in three.values()}) == 3


def test_the_export_is_made_once_and_kept(three: dict[str, SentenceTransformerEmbedder], cache_dir: Path) -> None:
    from workers.embedding import default_model_path

    directory = export_dir(cache_dir, default_model_path())
    files = {p.name: p.stat().st_mtime_ns for p in directory.glob("*.onnx")}
    assert set(files) == {"model.onnx", "model-int8.onnx"}
    assert not list(directory.glob("*.tmp")), "a temporary file was left behind"
    assert ensure_exported(default_model_path(), cache_dir, "int8").stat().st_mtime_ns == files["model-int8.onnx"]
    other = SentenceTransformerEmbedder(backend="onnx", cache_dir=cache_dir)
    other.embed(["again"])
    assert {p.name: p.stat().st_mtime_ns for p in directory.glob("*.onnx")} == files


def test_a_model_the_export_cannot_run_is_refused(tmp_path: Path) -> None:
    import json

    model = _model_copy(tmp_path)
    cfg = json.loads((model / "1_Pooling" / "config.json").read_text())
    cfg.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (model / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="onnx cannot run"):
        SentenceTransformerEmbedder(str(model), backend="onnx", cache_dir=tmp_path).embed(["x"])


def test_a_worker_on_an_existing_export_never_imports_torch(three: dict[str, SentenceTransformerEmbedder],
                                                              cache_dir: Path) -> None:
    code = "\n".join([
        "import sys",
        "from pathlib import Path",
        "from workers.embedding import SentenceTransformerEmbedder as E",
        f"e = E(backend='onnx-int8', cache_dir=Path({str(cache_dir)!r}))",
        "e.embed(['hi']), e.count_tokens('hi')",
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))",
    ])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
