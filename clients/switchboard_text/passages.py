"""Splitting text into passages: paragraphs, then sentences, then words.

The one implementation behind ``switchboard kb ingest`` (a section longer than its
limit becomes several documents) and the context service (a document longer than
``SWITCHBOARD_CONTEXT_PASSAGE_MAX_CHARS`` becomes several passages), so that both cut
the same text at the same places.
"""

from __future__ import annotations

import re

__all__ = ["split_passages"]

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_passages(text: str, max_chars: int) -> list[str]:
    """Split ``text`` into passages of at most ``max_chars`` characters.

    Whitespace runs become one space. Paragraphs are kept whole when they fit, and
    consecutive ones share a passage while it stays within the limit; longer ones are
    cut at sentence ends, and a sentence longer than the limit at the last space
    before it (or at the limit when that space is in its first half). No passage
    overlaps another: BM25 would count a repeated sentence twice.
    """
    if len(text) <= max_chars and "\n" not in text:  # one short paragraph: one passage
        single = " ".join(text.split())
        return [single] if single else []
    pieces: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            while len(sentence) > max_chars:
                cut = sentence.rfind(" ", 0, max_chars + 1)
                cut = cut if cut > max_chars // 2 else max_chars
                pieces.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if sentence:
                pieces.append(sentence)
    passages: list[str] = []
    current = ""
    for piece in pieces:
        candidate = f"{current} {piece}" if current else piece
        if len(candidate) <= max_chars:
            current = candidate
        else:
            passages.append(current)
            current = piece
    if current:
        passages.append(current)
    return passages
