from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from switchboard_server.classification.artifacts import ArtifactStore
from switchboard_server.classification.dataset import Example
from switchboard_server.classification.model import TrainConfig, TrainedModel, artifact_key
from switchboard_server.classification.overlay import Match, Overlay
from switchboard_server.classification.settings import ClassificationSettings
from switchboard_server.classification.store import ExampleStore
from switchboard_server.classification.taxonomy import HierarchyIndex
from switchboard_server.classification.threshold import tune_threshold
from switchboard_server.classification.trainer import holdout_split, train_model
from switchboard_server.classification.verdict import decide
from tests.support.classification import FakeEncoder, small_examples

CONFIG = TrainConfig.from_settings(ClassificationSettings())


@pytest.fixture(scope="module")
def tfidf_model() -> TrainedModel:
    return train_model(small_examples(), None, CONFIG, FakeEncoder)


def top(model: TrainedModel, text: str) -> tuple[str, float]:
    proba, _ = model.scorer.analyse([text])
    best = int(proba[0].argmax())
    return model.classes[best], float(proba[0, best])


def test_tfidf_learns_the_intents_with_calibrated_probabilities(tfidf_model: TrainedModel) -> None:
    assert tfidf_model.backend == "tfidf"
    assert top(tfidf_model, "please wake me up at nine")[0] == "alarm/set"
    assert top(tfidf_model, "will it rain on sunday")[0] == "weather/query"
    proba, features = tfidf_model.scorer.analyse(["cancel the alarm", "play jazz"])
    assert not isinstance(features, np.ndarray)  # tf-idf features are a sparse matrix
    assert proba.shape == (2, 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    norms = np.sqrt(np.asarray(features.multiply(features).sum(axis=1))).ravel()
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    assert CONFIG.min_threshold <= tfidf_model.threshold <= CONFIG.max_threshold


def test_hierarchy_confidences_are_sums_of_children() -> None:
    index = HierarchyIndex(["alarm/set", "alarm/remove", "iot/lights/on", "iot/lights/off", "x"])
    proba = np.array([0.5, 0.2, 0.1, 0.15, 0.05], np.float32)
    h = index.hierarchy(proba, "iot/lights/off")
    assert (h.l1, h.l2, h.l3) == ("iot", "lights", "off")
    assert h.l1_confidence == pytest.approx(0.25)
    assert h.l2_confidence == pytest.approx(0.25)
    assert h.l3_confidence == pytest.approx(0.15)
    flat = index.hierarchy(proba, "x")
    assert (flat.l1, flat.l1_confidence, flat.l2, flat.l2_confidence) == (  # type: ignore[comparison-overlap]
        "x",
        pytest.approx(0.05),
        "",
        0.0,
    )
    assert index.hierarchy(proba, "alarm/set").l1_confidence == pytest.approx(0.7)


def test_below_threshold_is_oos_with_the_best_guess_first() -> None:
    index = HierarchyIndex(["a/x", "a/y", "b/z"])
    proba = np.array([0.2, 0.5, 0.3], np.float32)
    intent, conf, h, alts, oos, overlay = decide(
        proba, index, threshold=0.6, top_k=2, match=None, overlay_min_similarity=0.8
    )
    assert (intent, oos, overlay) == ("oos", True, False)
    assert conf == pytest.approx(0.5)
    assert h.l1 == "oos"
    assert [a for a, _ in alts] == ["a/y", "b/z"]
    intent, conf, h, alts, oos, _ = decide(
        proba, index, threshold=0.4, top_k=3, match=None, overlay_min_similarity=0.8
    )
    assert (intent, oos, h.l1, h.l2) == ("a/y", False, "a", "y")
    assert h.l1_confidence == pytest.approx(0.7)
    assert [a for a, _ in alts] == ["a/y", "b/z", "a/x"]


def test_an_overlay_match_decides_even_for_a_new_intent() -> None:
    index = HierarchyIndex(["a/x", "b/z"])
    proba = np.array([0.9, 0.1], np.float32)
    match = Match("c/new", 0.95)
    intent, conf, h, _alts, oos, overlay = decide(
        proba, index, threshold=0.5, top_k=2, match=match, overlay_min_similarity=0.8
    )
    assert (intent, oos, overlay, h.l1, h.l2) == ("c/new", False, True, "c", "new")
    assert conf == pytest.approx(0.95)
    weak = decide(
        proba, index, threshold=0.5, top_k=2, match=Match("c/new", 0.5), overlay_min_similarity=0.8
    )
    assert weak[0] == "a/x"
    as_oos = decide(
        proba, index, threshold=0.5, top_k=2, match=Match("oos", 1.0), overlay_min_similarity=0.8
    )
    assert as_oos[0] == "oos"
    assert as_oos[4] is True
    assert as_oos[3][0][0] == "a/x"


def test_overlay_prefers_the_newest_of_equal_examples() -> None:
    a = np.array([[1.0, 0.0]], np.float32)
    overlay = Overlay().with_added([Example("t", "old/one")], a)
    overlay = overlay.with_added([Example("t", "new/one")], a)
    (match,) = overlay.nearest(a)
    assert match == Match("new/one", 1.0)
    assert Overlay().nearest(a) == [None]


def test_threshold_tuning_targets_acceptance_or_balances_with_oos() -> None:
    in_scope = np.linspace(0.01, 1.0, 100, dtype=np.float32)
    value = tune_threshold(in_scope, np.empty(0, np.float32), target_acceptance=0.9, low=0, high=1)
    assert (in_scope >= value).mean() == pytest.approx(0.9, abs=0.02)
    assert (
        tune_threshold(in_scope, np.empty(0, np.float32), target_acceptance=0.9, low=0.5, high=1)
        == 0.5
    )
    separated = tune_threshold(
        np.full(50, 0.9, np.float32),
        np.full(50, 0.2, np.float32),
        target_acceptance=0.95,
        low=0.0,
        high=1.0,
    )
    assert 0.2 < separated <= 0.9


def test_holdout_split_is_stratified_and_deterministic() -> None:
    examples = [*small_examples(), Example("rare one", "rare/intent")]
    keep, held = holdout_split(examples, 0.1)
    assert holdout_split(examples, 0.1) == (keep, held)
    assert len(keep) + len(held) == len(examples)
    assert {e.intent for e in held} == set(
        e.intent for e in small_examples()
    )  # every intent with >= 3 examples gives one
    assert Example("rare one", "rare/intent") in keep


def test_embeddings_and_hybrid_backends_share_the_interface() -> None:
    encoder = FakeEncoder()
    for backend in ("embeddings", "hybrid"):
        config = dataclasses.replace(CONFIG, backend=backend)
        model = train_model(small_examples(), None, config, lambda: encoder)
        assert model.backend == backend
        proba, features = model.scorer.analyse(["set an alarm for noon"])
        assert model.classes[int(proba[0].argmax())] == "alarm/set"
        assert features.shape == (1, FakeEncoder.dimension)


def test_artifact_key_follows_data_and_config() -> None:
    data = small_examples()
    key = artifact_key(CONFIG, data, None)
    assert artifact_key(CONFIG, list(data), None) == key
    assert artifact_key(CONFIG, [*data, Example("x", "a/b")], None) != key
    assert artifact_key(dataclasses.replace(CONFIG, tfidf_c=1.0), data, None) != key
    assert artifact_key(CONFIG, data, data[:3]) != key


def test_artifacts_round_trip_and_a_corrupt_one_means_retrain(
    tmp_path: Path, tfidf_model: TrainedModel
) -> None:
    store = ArtifactStore(tmp_path, keep=2)
    path = store.save(tfidf_model)
    assert path.exists()
    assert not list(path.parent.glob("*.tmp"))
    loaded = store.load(tfidf_model.artifact_key, FakeEncoder)
    assert loaded is not None
    assert loaded.version == tfidf_model.version
    assert top(loaded, "cancel my alarm") == top(tfidf_model, "cancel my alarm")
    path.write_bytes(b"not a pickle")
    assert store.load(tfidf_model.artifact_key, FakeEncoder) is None
    assert store.load("0" * 64, FakeEncoder) is None


def test_example_store_is_durable_across_reopen(tmp_path: Path) -> None:
    db = tmp_path / "examples.sqlite3"
    store = ExampleStore(db)
    assert store.add([Example("a", "x/y"), Example("b", "oos")]) == 2
    assert store.add([Example("c", "x/z")]) == 3
    store.close()
    reopened = ExampleStore(db)
    assert reopened.all() == [Example("a", "x/y"), Example("b", "oos"), Example("c", "x/z")]
    journal = reopened._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"
    reopened.close()


def test_fast_tfidf_rows_equal_scikit_learn_for_single_texts_and_batches(
    tfidf_model: TrainedModel,
) -> None:
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer

    corpus = [e.text for e in small_examples()]  # what the refitted model was fitted on
    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(corpus)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    char.fit(corpus)
    texts = [
        *corpus,
        "",
        "zzz qqq",
        "!!!",
        "Wake ME up  at\tSEVEN, then PLAY jazz!!",
        "a b c d e f",
        "café naïve résumé ÆON",
        "set-an alarm_for 7:30 o'clock",
    ]
    reference = sp.hstack([word.transform(texts), char.transform(texts)]).tocsr()
    featurizer = tfidf_model.scorer.featurizer  # type: ignore[attr-defined]
    batch_raw, batch_unit = featurizer.transform_pair(texts)
    assert batch_raw.shape == reference.shape
    assert abs(batch_raw - reference).max() < 1e-6
    for i, text in enumerate(texts):
        raw, unit = featurizer.transform_pair([text])
        assert abs(raw - reference[i]).max() < 1e-6
        assert abs(unit - batch_unit[i]).max() < 1e-6


def test_probabilities_alone_equal_those_of_analyse(tfidf_model: TrainedModel) -> None:
    """The row-by-row path (no sparse matrices) gives analyse()'s probabilities."""
    scorer = tfidf_model.scorer
    texts = ["wake me up at seven", "", "zzz qqq", "play some jazz", "what time is it", "hi"]
    expected, _ = scorer.analyse(texts)
    assert np.allclose(scorer.proba(texts), expected, atol=1e-6)  # whole-matrix path
    for i, text in enumerate(texts):
        single = scorer.proba([text])
        assert single.shape == (1, len(scorer.classes))
        assert np.allclose(single[0], expected[i], atol=1e-6)
    assert np.allclose(scorer.proba(texts[:2]), expected[:2], atol=1e-6)
