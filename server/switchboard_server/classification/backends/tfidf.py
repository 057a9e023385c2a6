"""TF-IDF word 1-2 and char 2-5 n-grams with a linear SVM, temperature-calibrated.

Fitting uses scikit-learn; serving does not import it. A text is turned into its
sparse row with the fitted vocabularies and re-implemented analyzers, identical to
scikit-learn's rows (a unit test keeps them equal): ``TfidfVectorizer.transform`` sets up
sparse matrices for every call, which dominates when a request carries one text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from switchboard_server.classification.backends.base import (
    EncoderFactory,
    FloatArray,
    LinearHead,
)

SMALL_BATCH = 4  # up to this many texts: row by row
WORD_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern
CHAR_NGRAMS = (2, 5)


def word_ngrams(text: str) -> list[str]:
    """Word 1-2 grams exactly as ``TfidfVectorizer(ngram_range=(1, 2))`` analyses."""
    tokens = WORD_TOKEN.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in pairwise(tokens)]


def char_wb_ngrams(word: str, low: int = CHAR_NGRAMS[0], high: int = CHAR_NGRAMS[1]) -> list[str]:
    """Character n-grams of one (lowercased) word padded with spaces, as ``char_wb`` does."""
    padded = f" {word} "
    size = len(padded)
    out: list[str] = []
    for n in range(low, high + 1):
        offset = 0
        out.append(padded[offset : offset + n])
        while offset + n < size:
            offset += 1
            out.append(padded[offset : offset + n])
        if offset == 0:  # a short word yields itself once
            break
    return out


class _Part:
    """One fitted vocabulary with its idf: turns texts into unit-norm TF-IDF rows.

    A text becomes the vocabulary indices of its n-grams (with repeats). ``char_wb``
    n-grams are computed per word, so each distinct word's indices are cached in a
    bounded dictionary. No scikit-learn object is kept: serving never imports it.
    """

    def __init__(
        self, vocabulary: dict[str, int], idf: FloatArray, offset: int, *, per_word: bool
    ) -> None:
        self.vocabulary = vocabulary
        self.idf = np.asarray(idf, dtype=np.float32)
        self.offset = offset
        self.per_word = per_word
        self.cache_words = 50_000
        self._cache: dict[str, list[int]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def indices(self, text: str) -> list[int]:
        vocabulary = self.vocabulary
        if not self.per_word:
            found = (vocabulary.get(token) for token in word_ngrams(text))
            return [i for i in found if i is not None]
        out: list[int] = []
        cache = self._cache
        for word in text.lower().split():
            hit = cache.get(word)
            if hit is None:
                grams = (vocabulary.get(g) for g in char_wb_ngrams(word))
                hit = [i for i in grams if i is not None]
                if len(cache) >= self.cache_words:
                    cache.clear()
                cache[word] = hit
            out.extend(hit)
        return out

    def row(self, text: str) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """(column indices incl. the offset, values) of one text's unit-norm row."""
        counts: dict[int, int] = {}
        for index in self.indices(text):
            counts[index] = counts.get(index, 0) + 1
        if not counts:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        idx = np.fromiter(counts.keys(), np.int64, len(counts))
        tf = np.fromiter(counts.values(), np.float32, len(counts))
        values = (np.float32(1.0) + np.log(tf)) * self.idf[idx]
        values /= np.linalg.norm(values)
        return idx + self.offset, values.astype(np.float32, copy=False)

    def matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        """TF-IDF rows (sublinear tf, idf, L2 per row) exactly as the vectoriser makes them."""
        rows: list[int] = []
        cols: list[int] = []
        for row, text in enumerate(texts):
            found = self.indices(text)
            cols.extend(found)
            rows.extend([row] * len(found))
        shape = (len(texts), len(self.idf))
        counts = sp.csr_matrix(
            (
                np.ones(len(cols), np.float32),
                (np.asarray(rows, np.int64), np.asarray(cols, np.int64)),
            ),
            shape=shape,
        )
        counts.sum_duplicates()
        data = (np.float32(1.0) + np.log(counts.data)) * self.idf[counts.indices]
        lengths = np.diff(counts.indptr)
        squares = np.zeros(len(texts), np.float32)
        np.add.at(squares, np.repeat(np.arange(len(texts)), lengths), data * data)
        norms = np.sqrt(squares)
        norms[norms == 0] = 1.0
        data = (data / np.repeat(norms, lengths)).astype(np.float32)
        return sp.csr_matrix((data, counts.indices, counts.indptr), shape=shape)


class TfidfFeaturizer:
    """Word 1-2 + char_wb 2-5 TF-IDF, each part L2-normalised (as scikit-learn does)."""

    def __init__(self, char_min_df: int) -> None:
        self.char_min_df = char_min_df
        self._parts: list[_Part] = []
        self.dimension = 0

    def fit(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Fit the vocabularies and idf with scikit-learn; returns the training rows."""
        from sklearn.feature_extraction.text import TfidfVectorizer  # training only

        word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
        char = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=CHAR_NGRAMS,
            sublinear_tf=True,
            min_df=self.char_min_df,
            dtype=np.float32,
        )
        fitted = sp.hstack([word.fit_transform(texts), char.fit_transform(texts)]).tocsr()
        n_words = len(word.vocabulary_)
        self._parts = [
            _Part(dict(word.vocabulary_), word.idf_, 0, per_word=False),
            _Part(dict(char.vocabulary_), char.idf_, n_words, per_word=True),
        ]
        self.dimension = n_words + len(char.vocabulary_)
        return fitted

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Rows as the fitted vectorisers would produce them (word columns, then char)."""
        return self.transform_pair(texts)[0]

    def transform_many(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Rows of many texts (whole-matrix path, whatever the count)."""
        return sp.hstack([p.matrix(texts) for p in self._parts], format="csr", dtype=np.float32)

    def transform_pair(self, texts: Sequence[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(rows as scikit-learn makes them, the same rows scaled to unit L2 norm).

        Each non-empty part is unit-norm, so a row's norm is sqrt(non-empty parts).
        Few texts go row by row (no sparse-matrix set-up cost), many as whole matrices.
        """
        if len(texts) <= SMALL_BATCH:
            return self._rows(texts)
        parts = [p.matrix(texts) for p in self._parts]
        raw = sp.hstack(parts, format="csr", dtype=np.float32)
        nonempty = sum((np.diff(m.indptr) > 0).astype(np.float32) for m in parts)
        scale = 1.0 / np.sqrt(np.maximum(nonempty, 1.0))
        unit_data = raw.data * np.repeat(scale, np.diff(raw.indptr)).astype(np.float32)
        unit = sp.csr_matrix((unit_data, raw.indices, raw.indptr), shape=raw.shape)
        return raw, unit

    def row(self, text: str) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """(column indices, values) of one text's row as :meth:`transform` makes it."""
        pieces = [part.row(text) for part in self._parts]
        return np.concatenate([i for i, _ in pieces]), np.concatenate([v for _, v in pieces])

    def _rows(self, texts: Sequence[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        indices: list[npt.NDArray[np.int64]] = []
        values: list[FloatArray] = []
        scaled: list[FloatArray] = []
        indptr = np.zeros(len(texts) + 1, np.int64)
        for row, text in enumerate(texts):
            pieces = [part.row(text) for part in self._parts]
            filled = sum(1 for idx, _ in pieces if len(idx))
            scale = np.float32(1.0 / np.sqrt(filled)) if filled else np.float32(1.0)
            for idx, val in pieces:
                indices.append(idx)
                values.append(val)
                scaled.append(val * scale)
            indptr[row + 1] = indptr[row] + sum(len(idx) for idx, _ in pieces)
        cols = np.concatenate(indices) if indices else np.empty(0, np.int64)
        shape = (len(texts), self.dimension)
        raw = sp.csr_matrix((np.concatenate(values), cols, indptr), shape=shape)
        unit = sp.csr_matrix((np.concatenate(scaled), cols, indptr), shape=shape)
        return raw, unit


class TfidfScorer:
    """The default backend: calibrated TF-IDF + linear SVM."""

    backend = "tfidf"

    def __init__(self, featurizer: TfidfFeaturizer, head: LinearHead, classes: Sequence[str]):
        self.featurizer = featurizer
        self.head = head
        self.classes = tuple(classes)

    def analyse(self, texts: Sequence[str]) -> tuple[FloatArray, sp.csr_matrix]:
        raw, unit = self.featurizer.transform_pair(texts)
        return self.head.proba(raw), unit

    def proba(self, texts: Sequence[str]) -> FloatArray:
        """Few texts: straight from their rows (building sparse matrices costs more)."""
        if len(texts) <= SMALL_BATCH:
            return self.head.proba_of_rows([self.featurizer.row(t) for t in texts])
        return self.head.proba(self.featurizer.transform(texts))

    def features(self, texts: Sequence[str]) -> sp.csr_matrix:
        return self.featurizer.transform_pair(texts)[1]

    def bind(self, encoder_factory: EncoderFactory) -> None:
        """Nothing to attach."""


def fit_linear_svm(features: sp.csr_matrix, labels: Sequence[str], c: float) -> LinearHead:
    """A one-vs-rest linear SVM over ``features``; classes sorted like ``sorted(set(labels))``."""
    classes = sorted(set(labels))
    if len(classes) == 1:
        # one class: a constant head (softmax of one logit is 1)
        return LinearHead(np.zeros((1, features.shape[1]), np.float32), np.zeros(1, np.float32))
    from sklearn.svm import LinearSVC  # training only

    svm = LinearSVC(C=c, dual="auto").fit(features, labels)
    coef, intercept = svm.coef_, svm.intercept_
    if len(classes) == 2:  # binary: sklearn keeps one row; make it two symmetric logits
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return LinearHead(coef, intercept)
