"""The ``onnx`` and ``onnx-int8`` embedding backends: a :func:`~workers.bert.plain_bert` model on ONNX Runtime.

The graph is exported here, from the model's own weights, by tracing :meth:`BertEncoder.forward`
(the ``bert`` backend's forward pass, so the two compute the same function), then simplified by ONNX
Runtime's basic graph optimizations (constant folding: the weights of every projection become plain
``MatMul`` initializers). ``onnx-int8`` is that graph with the weights of those projections
quantized to int8 per output channel, activations quantized dynamically at run time (ONNX Runtime's
``quantize_dynamic``); the embeddings, layer norms and attention products stay in float32.

Nothing is downloaded: the export runs on first use (a few seconds; or ahead of time with
``freshet model export``) into ``<cache_dir>/onnx/<key>/``, where the key is a hash of the
weights, the model config and the torch, ONNX Runtime and export-recipe versions, so a new version
of any of them exports again and clones share the files. Concurrent first uses (two workers
starting together) take a file lock; files appear by atomic rename only. A worker whose export
exists never imports torch.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import structlog

from workers.bert import TokenizedEncoder

log = structlog.get_logger(__name__)

Variant = Literal["fp32", "int8"]
#: Bump when the export or quantization recipe changes: every cached export is made again.
RECIPE = 1
_OPSET = 17
_FILES: dict[Variant, str] = {"fp32": "model.onnx", "int8": "model-int8.onnx"}


def export_dir(cache_dir: Path, model_dir: Path) -> Path:
    """Where the exports of ``model_dir`` are kept under ``cache_dir``."""
    import onnxruntime

    digest = hashlib.sha256()
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        with (model_dir / name).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    digest.update(f"recipe {RECIPE} opset {_OPSET} onnxruntime {onnxruntime.__version__} "
                  f"torch {_torch_version()}".encode())
    return cache_dir / "onnx" / digest.hexdigest()[:20]


def _torch_version() -> str:
    from importlib.metadata import version

    return version("torch")


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _make(directory: Path, name: str, write: Any, variant: Variant) -> None:
    """``write(tmp)`` into a temporary file of ``directory``, then renamed to ``name`` (never half a file)."""
    started = time.monotonic()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / name)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("model_exported", variant=variant, path=str(directory / name),
             seconds=round(time.monotonic() - started, 1), mb=round((directory / name).stat().st_size / 1e6, 1))


def _export_fp32(model_dir: Path, target: str) -> None:
    import onnxruntime as ort
    import torch

    from workers.bert import BertEncoder

    encoder = BertEncoder(model_dir)

    class Forward(torch.nn.Module):
        def forward(self, ids: Any, mask: Any) -> Any:
            return encoder.forward(ids, mask)

    example = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
    with tempfile.TemporaryDirectory() as tmp:
        traced = str(Path(tmp) / "traced.onnx")
        with warnings.catch_warnings():  # the TorchScript exporter (the dynamo one needs onnxscript) is deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(Forward(), example, traced, input_names=["input_ids", "attention_mask"],
                              output_names=["embedding"], opset_version=_OPSET, dynamo=False,
                              dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                            "attention_mask": {0: "batch", 1: "tokens"},
                                            "embedding": {0: "batch"}})
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # portable: no CPU-specific ops
        options.optimized_model_filepath = target
        options.log_severity_level = 3
        ort.InferenceSession(traced, options, providers=["CPUExecutionProvider"])


def _quantize(fp32: Path, target: str) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    activations_only = [n.name for n in graph.node if n.op_type == "MatMul" and not weights & set(n.input)]
    quiet = logging.getLogger()  # quantize_dynamic warns on the root logger about a pre-processing step
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(fp32), target, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=activations_only)
    finally:
        quiet.setLevel(level)


def ensure_exported(model_dir: Path, cache_dir: Path, variant: Variant) -> Path:
    """The ONNX file of ``model_dir`` in ``variant``, exported (and quantized) now if not yet."""
    directory = export_dir(cache_dir, model_dir)
    target = directory / _FILES[variant]
    if target.is_file():
        return target
    with _locked(directory):
        fp32 = directory / _FILES["fp32"]
        if not fp32.is_file():
            _make(directory, fp32.name, lambda tmp: _export_fp32(model_dir, tmp), "fp32")
        if not target.is_file():
            _make(directory, target.name, lambda tmp: _quantize(fp32, tmp), "int8")
    return target


class OnnxEncoder(TokenizedEncoder):
    """Runs the exported graph of a :func:`~workers.bert.plain_bert` model on ONNX Runtime's CPU provider."""

    def __init__(self, model_dir: Path, cache_dir: Path, variant: Variant = "fp32", threads: int = 0) -> None:
        import onnxruntime as ort

        super().__init__(model_dir)
        self.path = ensure_exported(model_dir, cache_dir, variant)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default, one per physical core
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def _run(self, ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        vectors = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
        return np.asarray(vectors, dtype=np.float32)
