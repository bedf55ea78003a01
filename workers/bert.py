"""A BERT sentence encoder in plain torch, for the ``bert`` embedding backend.

A sentence-transformers model made of a BERT transformer, mean pooling and (optionally)
normalization (freshet always normalizes) -- all-MiniLM-L6-v2, the bundled default, is one -- is a forward pass of about
fifty lines. Running it here rather than through sentence-transformers computes the same vectors
(the unit tests compare both on real text) and token counts (the same ``tokenizer.json``), but a
worker no longer imports sentence-transformers and transformers: about 10 s of its start on this
2-core machine, paid again by every restart and every indexer that joins. :func:`plain_bert`
says whether a model directory is of that shape; anything else goes to sentence-transformers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_NORMALIZE = "sentence_transformers.models.Normalize"


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def plain_bert(model_dir: Path) -> str | None:
    """None when ``model_dir`` is a sentence-transformers BERT model with mean pooling this module
    runs exactly; else why not (the reason is logged when the backend falls back)."""
    try:
        modules = [m.get("type", "").replace("sentence_transformers.base.modules", "sentence_transformers.models")
                   for m in _json(model_dir / "modules.json")]
        config = _json(model_dir / "config.json")
        pooling_dir = next((m.get("path", "") for m in _json(model_dir / "modules.json")
                            if m.get("type", "").endswith("Pooling")), "1_Pooling")
        pooling = _json(model_dir / pooling_dir / "config.json")
    except (OSError, ValueError, AttributeError) as exc:
        return f"not a sentence-transformers directory ({exc})"
    if modules not in ([_TRANSFORMER, _POOLING], [_TRANSFORMER, _POOLING, _NORMALIZE]):
        return f"modules {modules}"
    if config.get("model_type") != "bert" or config.get("architectures", ["BertModel"]) != ["BertModel"]:
        return f"model type {config.get('model_type')!r} {config.get('architectures')}"
    if config.get("position_embedding_type", "absolute") != "absolute" or config.get("hidden_act") != "gelu":
        return "position embeddings or activation other than BERT's"
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if modes != {"pooling_mode_mean_tokens"}:
        return f"pooling {sorted(modes)}"
    if pooling.get("include_prompt") is False:
        return "pooling without the prompt"
    for name in ("tokenizer.json", "model.safetensors"):
        if not (model_dir / name).is_file():
            return f"no {name}"
    return None


class TokenizedEncoder:
    """What every runner of a :func:`plain_bert` model shares: its tokenizer, ``count_tokens``,
    ``max_seq_length``, ``get_embedding_dimension`` (as sentence-transformers' ``SentenceTransformer``
    has them) and ``encode``, which cuts length-sorted batches and hands each, as int64 ids and
    attention mask arrays, to :meth:`_run` (the forward pass: torch here, ONNX Runtime in
    :mod:`workers.onnx_backend`)."""

    def __init__(self, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        cfg = _json(model_dir / "config.json")
        st_cfg_path = model_dir / "sentence_bert_config.json"
        st_cfg = _json(st_cfg_path) if st_cfg_path.is_file() else {}
        self.max_seq_length = int(st_cfg.get("max_seq_length") or cfg["max_position_embeddings"])
        self._hidden = int(cfg["hidden_size"])
        self._heads = int(cfg["num_attention_heads"])
        self._layers = int(cfg["num_hidden_layers"])
        self._eps = float(cfg.get("layer_norm_eps", 1e-12))
        self._counter = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._counter.no_padding()
        self._counter.no_truncation()
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_seq_length)

    def get_embedding_dimension(self) -> int:
        return self._hidden

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the special tokens, untruncated (as the model's tokenizer counts)."""
        return len(self._counter.encode(text, add_special_tokens=True).ids)

    def encode(self, texts: Sequence[str], *, batch_size: int = 8) -> np.ndarray[Any, Any]:
        """Unit vectors of ``texts`` (as ``normalize_embeddings=True``), in order; batches of similar length."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self._hidden), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            encs = self._tokenizer.encode_batch([texts[i] for i in idx], add_special_tokens=True)
            width = max(len(e.ids) for e in encs)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, e in enumerate(encs):
                ids[row, :len(e.ids)] = e.ids
                mask[row, :len(e.ids)] = 1
            out[idx] = self._run(ids, mask)
        return out

    def _run(self, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Unit vectors of one batch of token ids (``mask`` 1 on real tokens, 0 on padding)."""
        raise NotImplementedError


class BertEncoder(TokenizedEncoder):
    """Runs a :func:`plain_bert` model's forward pass in plain torch."""

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        import torch
        from safetensors.torch import load_file

        super().__init__(model_dir)
        self._torch = torch
        self._device = torch.device(device)
        weights = load_file(str(model_dir / "model.safetensors"), device=str(self._device))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
        self._w = {k[len(prefix):]: v.float() for k, v in weights.items() if k.startswith(prefix)}

    def _run(self, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        torch = self._torch
        with torch.inference_mode():
            vectors = self.forward(torch.from_numpy(ids).to(self._device), torch.from_numpy(mask).to(self._device))
            return vectors.cpu().numpy()  # type: ignore[no-any-return]

    def forward(self, ids: Any, mask: Any) -> Any:
        """The model on torch tensors of ids and mask: unit vectors (also what the ONNX export traces)."""
        torch, w = self._torch, self._w
        fn = torch.nn.functional
        batch, width = ids.shape
        heads, dim = self._heads, self._hidden // self._heads

        def linear(x: Any, name: str) -> Any:
            return fn.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])

        def norm(x: Any, name: str) -> Any:
            return fn.layer_norm(x, (self._hidden,), w[f"{name}.weight"], w[f"{name}.bias"], self._eps)

        def split(x: Any) -> Any:
            return x.view(batch, width, heads, dim).transpose(1, 2)

        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:width].unsqueeze(0)
             + w["embeddings.token_type_embeddings.weight"][0])
        x = norm(x, "embeddings.LayerNorm")
        keep = mask[:, None, None, :].bool()  # attend to real tokens only
        for n in range(self._layers):
            p = f"encoder.layer.{n}"
            q, k, v = (split(linear(x, f"{p}.attention.self.{name}")) for name in ("query", "key", "value"))
            ctx = fn.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=1.0 / math.sqrt(dim))
            ctx = ctx.transpose(1, 2).reshape(batch, width, self._hidden)
            x = norm(linear(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
            inner = fn.gelu(linear(x, f"{p}.intermediate.dense"))
            x = norm(linear(inner, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        m = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return fn.normalize(pooled, p=2, dim=1)
