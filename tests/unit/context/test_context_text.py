"""Index terms and passage splitting."""

from __future__ import annotations

import random

from switchboard_server.context.text import query_terms, split_passages, stem, terms


def test_inflections_share_a_term() -> None:
    assert {stem(w) for w in ("retry", "retries", "retried", "retrying")} == {"retry"}
    assert {stem(w) for w in ("call", "calls", "called", "calling")} == {"call"}
    assert {stem(w) for w in ("trace", "traces", "tracing", "traced")} == {"trac"}


def test_terms_drop_stop_words_punctuation_and_accents() -> None:
    assert terms("How does the Café retry_failed calls?") == ["cafe", "retry", "fail", "call"]
    assert query_terms("calls call CALLED") == ["call"]


def test_ascii_fast_path_splits_words_like_the_regex() -> None:
    """ASCII text takes a byte-translation path; it must find exactly the runs of letters
    and digits that the regex (used for other text) finds, for every ASCII character."""
    alphabet = [chr(c) for c in range(128)] + list("aeiouAEIOU09 ") * 8
    rng = random.Random(25)
    for _ in range(2_000):
        sample = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        # one accented word sends the text down the regex path ("\u00e9" is the term "e")
        assert terms(sample) == terms(sample + " \u00e9")[:-1], repr(sample)
    assert terms("Retry_after:3 TIMEOUTS\x1fcafe") == ["retry", "3", "timeout", "cafe"]


def test_short_text_is_one_passage() -> None:
    assert split_passages("One.  Two\nlines.", 100) == ["One. Two lines."]


def test_long_text_is_cut_at_sentences_within_the_limit() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    passages = split_passages(text, 120)
    assert all(len(p) <= 120 for p in passages)
    assert " ".join(passages) == text
    assert all(p.endswith(".") for p in passages)


def test_a_huge_word_run_is_still_cut() -> None:
    passages = split_passages("word " * 100 + "x" * 300, 64)
    assert all(len(p) <= 64 for p in passages)
    assert "".join(passages).replace(" ", "") == ("word" * 100 + "x" * 300)
