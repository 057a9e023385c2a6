"""Text handling shared by every backend: index terms and passage splitting
(``split_passages``, from ``switchboard_text``).

Session memory's terms (both backends alike): lowercase runs of letters and digits
(no underscore, like SQLite's ``unicode61`` tokenizer), English stop words and chat
fillers ("tell me", "please", "explain") dropped, and a light suffix stemmer so that
"retries", "retried" and "retrying" all match "retry". The knowledge base is analysed
by tantivy instead (``analyzer``), with these stop words.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# shared with ``switchboard kb`` (the client), which cuts sections the same way
from switchboard_text.passages import split_passages as split_passages

_WORD = re.compile(r"[^\W_]+")
# ASCII text: every byte that is not a letter or digit becomes a space, so that
# ``split`` yields exactly the runs ``_WORD`` finds (about 2.5x faster than the regex)
_ASCII_SPACES = bytes(c if chr(c).isalnum() and c < 128 else 32 for c in range(256))

_STOP_WORDS = """a about above after again all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is it
its itself just me more most my myself no nor not now of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves
hi hello hey please thanks thank ok okay tell explain describe show give know want need
let us can may might must shall also really just"""

STOP_WORDS = frozenset(_STOP_WORDS.split())


def _strip_accents(text: str) -> str:
    if text.isascii():  # nothing to strip (most text): skip the per-character pass
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def stem(word: str) -> str:
    """A light English suffix stemmer (plural, -ed, -ing, trailing e)."""
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith(("ies", "ied")) and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("ying") and len(word) > 5:
        word = word[:-3]
    elif word.endswith("ing") and len(word) > 5:
        word = word[:-3]
        if len(word) > 2 and word[-1] == word[-2] and word[-1] not in "lsz":
            word = word[:-1]
    elif word.endswith("ed") and len(word) > 4:
        word = word[:-2]
        if len(word) > 2 and word[-1] == word[-2] and word[-1] not in "lsz":
            word = word[:-1]
    elif word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


@functools.lru_cache(maxsize=1 << 17)
def _term(word: str) -> str:
    """The index term of a lowercase word, "" for a stop word. A pure function,
    memoised: text repeats its words, and a bulk ingest analyses millions of them."""
    return "" if word in STOP_WORDS else stem(word)


def terms(text: str) -> list[str]:
    """Index terms of ``text`` in order (duplicates kept)."""
    if text.isascii():
        words = text.encode("ascii").lower().translate(_ASCII_SPACES).decode("ascii").split()
    else:
        words = _WORD.findall(_strip_accents(text).lower())
    return list(filter(None, map(_term, words)))  # the loop runs in C: bulk ingest


def query_terms(text: str) -> list[str]:
    """Distinct index terms of a query, in order of first appearance."""
    return list(dict.fromkeys(terms(text)))
