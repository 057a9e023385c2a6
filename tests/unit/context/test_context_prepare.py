"""``domain.pieces`` skips the splitter only where the splitter returns the text whole."""

from __future__ import annotations

import random

from switchboard_server.context import text
from switchboard_server.context.domain import pieces, prepare
from switchboard_server.context.values import Document


def test_pieces_agree_with_the_splitter_on_random_text() -> None:
    rng = random.Random(25)
    alphabet = [chr(c) for c in range(128)] + ["é", "\u00a0", "\u2003"] + ["word "] * 20
    fast = 0
    for _ in range(20_000):
        body = "".join(rng.choices(alphabet, k=rng.randint(0, 60)))
        if rng.random() < 0.5:  # many already clean: the fast path must be exercised
            body = " ".join(body.split())
        limit = rng.choice([10, 40, 200])
        expected = text.split_passages(body, limit)
        assert pieces(body, limit) == expected, repr(body)
        fast += expected == [body]
    assert fast > 1_000


def test_prepare_numbers_passages_from_their_document() -> None:
    prepared = prepare(Document("faq.md", "FAQ", "One.\n\nTwo two two two.", {}), 20)
    assert [(p.id, p.ordinal, p.title) for p in prepared.passages] == [
        ("faq.md#0", 0, "FAQ"),
        ("faq.md#1", 1, "FAQ"),
    ]
    assert [p.content for p in prepared.passages] == ["One.", "Two two two two."]
