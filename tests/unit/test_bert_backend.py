"""The ``bert`` backend computes what sentence-transformers computes, without importing it.

Both backends embed the same real passages (a BEIR corpus from ../shared, when present) and the
same awkward texts (empty, whitespace, accents, CJK, emoji, longer than the model's 256 tokens);
their vectors agree to float precision and their token counts exactly (chunk boundaries, so chunk
ids, depend on the counts). A worker on the default model never imports sentence-transformers or
transformers (their imports are about 10 s of a worker's start on a 2-core machine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from freshet.errors import ConfigError
from workers.bert import plain_bert
from workers.embedding import SentenceTransformerEmbedder, default_model_path

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
AWKWARD = ["", " ", "\n\n", "Crème brûlée à la française — déjà vu", "東京は日本の首都です", "emoji 🚀🔥 and ZWJ 👩‍💻",
           "word " * 400, "# Heading\n\n```python\nprint('x')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |",
           "MiXeD CaSe and    many     spaces\tand tabs", "a"]


def _passages(limit: int) -> list[str]:
    corpus = SHARED / "msmarco-5k" / "corpus.jsonl"
    if not corpus.is_file():
        return []
    out = []
    with corpus.open(encoding="utf-8") as fh:
        for line in fh:
            doc = json.loads(line)
            out.append(f"{doc.get('title', '')}\n\n{doc['text']}".strip())
            if len(out) >= limit:
                break
    return out


@pytest.fixture(scope="module")
def both() -> tuple[SentenceTransformerEmbedder, SentenceTransformerEmbedder]:
    bert = SentenceTransformerEmbedder(backend="bert", batch_size=16)
    st = SentenceTransformerEmbedder(backend="sentence-transformers", batch_size=16)
    assert (bert.backend, st.backend) == ("bert", "sentence-transformers")
    return bert, st


def test_the_default_model_is_plain_bert() -> None:
    assert plain_bert(default_model_path()) is None


def test_both_backends_give_the_same_vectors_and_token_counts(both: tuple[SentenceTransformerEmbedder, ...]) -> None:
    bert, st = both
    texts = AWKWARD + _passages(150)
    a, b = np.array(bert.embed(texts)), np.array(st.embed(texts))
    assert a.shape == b.shape == (len(texts), 384)
    assert np.abs(a - b).max() < 2e-5, f"largest difference {np.abs(a - b).max():.2e}"
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert [bert.count_tokens(t) for t in texts] == [st.count_tokens(t) for t in texts]
    assert (bert.max_tokens, bert.dimension) == (st.max_tokens, st.dimension) == (256, 384)


def test_order_and_batching_do_not_change_a_vector(both: tuple[SentenceTransformerEmbedder, ...]) -> None:
    bert, _ = both
    texts = AWKWARD[3:] + _passages(40)
    together = np.array(bert.embed(texts))
    alone = np.array([bert.embed([t])[0] for t in texts])
    assert np.abs(together - alone).max() < 2e-5


def _model_copy(tmp_path: Path) -> Path:
    src, dst = default_model_path(), tmp_path / "model"
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).symlink_to(f)
    shutil.copytree(src / "1_Pooling", dst / "1_Pooling")
    return dst


def test_another_pooling_is_left_to_sentence_transformers(tmp_path: Path) -> None:
    model = _model_copy(tmp_path)
    cfg = json.loads((model / "1_Pooling" / "config.json").read_text())
    cfg.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (model / "1_Pooling" / "config.json").write_text(json.dumps(cfg))
    assert "pooling" in (plain_bert(model) or "")
    with pytest.raises(ConfigError, match="cannot run"):
        SentenceTransformerEmbedder(str(model), backend="bert").embed(["x"])


def test_a_worker_on_the_default_model_never_imports_sentence_transformers() -> None:
    code = "\n".join([
        "import sys, streams.indexer, streams.query",
        "from workers.embedding import SentenceTransformerEmbedder as E",
        "e = E()",
        "e.embed(['hi']), e.count_tokens('hi')",
        "print(sorted(m for m in ('sentence_transformers', 'transformers') if m in sys.modules))",
    ])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
