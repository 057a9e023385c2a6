"""Intent discovery: cluster the texts answered out of scope into candidate intents.

Texts become unit vectors (TF-IDF word n-grams, or MiniLM sentence embeddings when the
``embeddings`` extra is installed), are clustered with scikit-learn (agglomerative with
average linkage and a cosine-distance threshold, the default, or HDBSCAN), and every
cluster of at least ``min_size`` texts is a :class:`Candidate`: its size, how many
distinct (hashed) sessions it came from, representative texts (the nearest to its
centroid), its top terms and a suggested label. Smaller clusters are noise.
docs/classification.md has the measurement behind the defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.cluster import HDBSCAN, AgglomerativeClustering
from sklearn.feature_extraction.text import TfidfVectorizer

from switchboard_server.classification.backends.base import EncoderFactory
from switchboard_server.classification.labels import normalize_label

Method = Literal["agglomerative", "hdbscan"]
Features = Literal["tfidf", "embeddings"]
FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
NOISE = -1
# cosine distance at which agglomerative clusters stop merging, per features (measured)
DEFAULT_DISTANCE: dict[str, float] = {"tfidf": 0.9, "embeddings": 0.8}
RECORD_VERSION = 1


@dataclass(frozen=True)
class DiscoveryConfig:
    """How to cluster (defaults chosen by the HWU64 measurement)."""

    method: Method = "agglomerative"
    features: Features = "tfidf"
    distance_threshold: float = 0.9
    min_size: int = 3
    representatives: int = 5
    terms: int = 3


@dataclass(frozen=True)
class Candidate:
    """One cluster of out-of-scope texts: a candidate intent."""

    cluster: int
    size: int
    sessions: int
    suggested_label: str
    terms: tuple[str, ...]
    representatives: tuple[str, ...]
    texts: tuple[str, ...]


def tfidf_vectors(texts: Sequence[str]) -> FloatArray:
    """L2-normalised TF-IDF of character 3-5-grams within words: unlike words, they
    match "tax"/"taxes" and "plant"/"plants" (measured: higher ARI on HWU64)."""
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
    return np.asarray(vectorizer.fit_transform(texts).toarray(), dtype=np.float32)


def word_terms(texts: Sequence[str]) -> tuple[TfidfVectorizer, Any]:
    """Word 1-2-gram TF-IDF without English stop words: names a cluster by its terms."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), stop_words="english", sublinear_tf=True)
    try:
        return vectorizer, vectorizer.fit_transform(texts)
    except ValueError:  # only stop words: every word counts
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        return vectorizer, vectorizer.fit_transform(texts)


def vectors_for(
    texts: Sequence[str], features: Features, encoder_factory: EncoderFactory | None = None
) -> FloatArray:
    if features == "tfidf":
        return tfidf_vectors(texts)
    if encoder_factory is None:
        raise ValueError("embeddings features need an encoder")
    vectors = encoder_factory().encode(list(texts))
    norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    normalised: FloatArray = (vectors / norms).astype(np.float32)
    return normalised


def cluster_labels(vectors: FloatArray, config: DiscoveryConfig) -> IntArray:
    """A cluster id per row; rows of clusters smaller than ``min_size`` get NOISE."""
    n = len(vectors)
    if n < max(config.min_size, 2):
        return np.full(n, NOISE, dtype=np.int64)
    if config.method == "hdbscan":
        model = HDBSCAN(min_cluster_size=max(config.min_size, 2), metric="euclidean", copy=True)
        raw = np.asarray(model.fit_predict(vectors), dtype=np.int64)
    else:
        agglomerative = AgglomerativeClustering(
            n_clusters=None,
            distance_threshold=config.distance_threshold,
            metric="cosine",
            linkage="average",
        )
        # an all-zero row (only unknown words) has no cosine distance: give it a tiny one
        safe = vectors.copy()
        empty = ~safe.any(axis=1)
        safe[empty, 0] = 1e-6
        raw = np.asarray(agglomerative.fit_predict(safe), dtype=np.int64)
    ids, counts = np.unique(raw[raw != NOISE], return_counts=True)
    kept = {int(i) for i, c in zip(ids, counts, strict=True) if c >= config.min_size}
    return np.array([r if int(r) in kept else NOISE for r in raw], dtype=np.int64)


def candidates(
    texts: Sequence[str],
    sessions: Sequence[str],
    labels: IntArray,
    vectors: FloatArray,
    config: DiscoveryConfig,
) -> list[Candidate]:
    """The clusters as candidates, largest first, numbered from 1 in that order."""
    vectorizer, term_matrix = word_terms(texts)
    vocabulary = vectorizer.get_feature_names_out()
    groups = sorted(
        (int(c) for c in set(labels.tolist()) if c != NOISE),
        key=lambda c: (-int((labels == c).sum()), c),
    )
    result = []
    for number, cluster in enumerate(groups, start=1):
        rows = np.flatnonzero(labels == cluster)
        centroid = vectors[rows].mean(axis=0)
        order = rows[np.argsort(-(vectors[rows] @ centroid), kind="stable")]
        representatives: list[str] = []
        for row in order.tolist():
            if texts[row] not in representatives:
                representatives.append(texts[row])
            if len(representatives) == config.representatives:
                break
        weights = np.asarray(term_matrix[rows].mean(axis=0)).ravel()
        top = [str(vocabulary[i]) for i in np.argsort(-weights)[: config.terms] if weights[i] > 0]
        words: list[str] = []  # the top terms' words, each once ("plants", "water plants")
        for term in top:
            words.extend(w for w in term.split() if w not in words)
        label = normalize_label("_".join(words[:3])) or f"cluster_{number}"
        result.append(
            Candidate(
                cluster=number,
                size=len(rows),
                sessions=len({sessions[r] for r in rows.tolist() if sessions[r]}),
                suggested_label=label,
                terms=tuple(top),
                representatives=tuple(representatives),
                texts=tuple(texts[r] for r in rows.tolist()),
            )
        )
    return result


def discover(
    texts: Sequence[str],
    sessions: Sequence[str],
    config: DiscoveryConfig,
    encoder_factory: EncoderFactory | None = None,
) -> tuple[list[Candidate], IntArray]:
    """Candidates of ``texts`` and the cluster id of each text (NOISE for none)."""
    if not texts:
        return [], np.empty(0, dtype=np.int64)
    vectors = vectors_for(texts, config.features, encoder_factory)
    labels = cluster_labels(vectors, config)
    return candidates(texts, sessions, labels, vectors, config), labels


def discovery_record(
    config: DiscoveryConfig, messages: int, found: Sequence[Candidate]
) -> dict[str, Any]:
    """What ``switchboard discover`` writes and ``switchboard examples add`` reads."""
    clustered = sum(c.size for c in found)
    return {
        "version": RECORD_VERSION,
        "method": config.method,
        "features": config.features,
        "distance_threshold": config.distance_threshold if config.method != "hdbscan" else None,
        "min_size": config.min_size,
        "messages": messages,
        "noise": messages - clustered,
        "clusters": [
            {
                "cluster": c.cluster,
                "size": c.size,
                "sessions": c.sessions,
                "suggested_label": c.suggested_label,
                "terms": list(c.terms),
                "representatives": list(c.representatives),
                "texts": list(c.texts),
            }
            for c in found
        ],
    }


def discovery_table(record: dict[str, Any], width: int = 60) -> str:
    """The clusters of a discovery record as a plain-text table, largest first."""
    lines = [
        f"{record['messages']} out-of-scope messages, {len(record['clusters'])} clusters, "
        f"{record['noise']} unclustered ({record['method']}, {record['features']})",
        "",
        f"{'#':>3}  {'size':>5}  {'sessions':>8}  {'suggested label':<28}  examples",
    ]
    for c in record["clusters"]:
        examples = c["representatives"] or [""]
        first = examples[0][:width]
        lines.append(
            f"{c['cluster']:>3}  {c['size']:>5}  {c['sessions']:>8}  "
            f"{c['suggested_label'][:28]:<28}  {first}"
        )
        lines.extend(f"{'':>52}{text[:width]}" for text in examples[1:])
    return "\n".join(lines)
