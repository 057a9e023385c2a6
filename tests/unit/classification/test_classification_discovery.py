"""Intent discovery: the bounded, hashed store of out-of-scope messages and the clustering."""

from __future__ import annotations

import random
import sqlite3
import stat
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from switchboard_server.classification.discovery import (
    NOISE,
    DiscoveryConfig,
    discover,
    discovery_record,
    discovery_table,
)
from switchboard_server.classification.store.outofscope import (
    OutOfScopeMessage,
    OutOfScopeStore,
    hash_session,
)
from switchboard_server.classification.store.salt import load_or_create_salt

SALT = b"0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def message(text: str, session: str = "") -> OutOfScopeMessage:
    return OutOfScopeMessage(text, session, 0.1, "alarm/set", "tfidf-abc")


def store_at(
    path: Path, clock: Clock, *, max_messages: int = 100, max_age_s: float = 60.0
) -> OutOfScopeStore:
    return OutOfScopeStore(
        path, salt=SALT, max_messages=max_messages, max_age_s=max_age_s, clock=clock
    )


def test_retention_keeps_the_newest_messages_up_to_the_count(tmp_path: Path) -> None:
    store = store_at(tmp_path / "d.sqlite3", Clock(), max_messages=3)
    try:
        for i in range(5):
            kept = store.add([message(f"text {i}")])
        assert kept == 3
        assert [m.text for m in store.all()] == ["text 2", "text 3", "text 4"]
    finally:
        store.close()


def test_retention_drops_messages_older_than_the_age(tmp_path: Path) -> None:
    clock = Clock()
    store = store_at(tmp_path / "d.sqlite3", clock, max_age_s=60.0)
    try:
        store.add([message("old")])
        clock.now += 30
        store.add([message("newer")])
        clock.now += 31  # "old" is now 61 s old: not read, and deleted by the next write
        assert [m.text for m in store.all()] == ["newer"]
        store.add([message("newest")])
        assert store.count() == 2
    finally:
        store.close()
    rows = sqlite3.connect(tmp_path / "d.sqlite3").execute("SELECT text FROM messages").fetchall()
    assert rows == [("newer",), ("newest",)]


def test_session_ids_are_stored_only_as_salted_hashes(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    store = store_at(path, Clock())
    try:
        store.add([message("a", "session-alice-42"), message("b", "session-alice-42")])
        store.add([message("c", "session-bob-7"), message("d", "")])
        hashes = [m.session_hash for m in store.all()]
    finally:
        store.close()
    assert hashes[0] == hashes[1] == hash_session(SALT, "session-alice-42")
    assert hashes[2] != hashes[0]
    assert hashes[3] == ""
    assert hash_session(b"another salt, 16+ bytes", "session-alice-42") != hashes[0]
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"session-alice-42" not in on_disk
    assert b"session-bob-7" not in on_disk
    assert hashes[0].encode() in on_disk


def test_the_salt_is_random_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "discovery.salt"
    salt = load_or_create_salt(path)
    assert len(salt) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_salt(path) == salt
    assert load_or_create_salt(tmp_path / "other.salt") != salt


PLANTED = {
    "tax": [
        "help me file my tax return",
        "when is the tax return deadline",
        "how do i file my taxes online",
        "i need help with my tax return",
        "file tax return before the deadline",
        "can you do my taxes",
    ],
    "grooming": [
        "book a dog grooming appointment",
        "my dog needs grooming",
        "find a dog groomer near me",
        "schedule grooming for my dog next week",
        "dog grooming appointment tomorrow",
        "how much does dog grooming cost",
    ],
    "parking": [
        "where can i park my car downtown",
        "find parking near the stadium",
        "is there free parking nearby",
        "how much is parking at the airport",
        "reserve a parking spot",
        "parking garage near me",
    ],
    "plants": [
        "how often should i water my plants",
        "my houseplant leaves are turning yellow",
        "water the plants in the garden",
        "which plants grow well indoors",
        "repot my plant",
        "best fertilizer for house plants",
    ],
}


def test_discover_recovers_planted_clusters() -> None:
    pairs = [(text, intent) for intent, texts in PLANTED.items() for text in texts]
    random.Random(7).shuffle(pairs)
    texts, truth = [t for t, _ in pairs], [y for _, y in pairs]
    sessions = [f"h{i % 5}" for i in range(len(texts))]
    found, labels = discover(texts, sessions, DiscoveryConfig(features="tfidf"))
    singletons = np.where(labels != NOISE, labels, -(np.arange(len(labels)) + 2))
    assert adjusted_rand_score(truth, singletons) >= 0.6
    assert len(found) >= 4
    for intent, planted in PLANTED.items():  # each planted intent is the majority somewhere
        assert any(sum(t in planted for t in c.texts) > c.size / 2 for c in found), intent
    assert [c.cluster for c in found] == list(range(1, len(found) + 1))
    assert [c.size for c in found] == sorted((c.size for c in found), reverse=True)
    top = found[0]
    assert set(top.representatives) <= set(top.texts)
    assert 1 <= top.sessions <= 5
    record = discovery_record(DiscoveryConfig(features="tfidf"), len(texts), found)
    assert record["noise"] == len(texts) - sum(c["size"] for c in record["clusters"])
    assert top.suggested_label in discovery_table(record)


def test_discover_with_too_few_texts_finds_nothing() -> None:
    assert discover([], [], DiscoveryConfig())[0] == []
    found, labels = discover(["one", "two"], ["", ""], DiscoveryConfig(features="tfidf"))
    assert found == []
    assert labels.tolist() == [NOISE, NOISE]
