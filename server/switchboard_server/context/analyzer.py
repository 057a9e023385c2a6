"""The knowledge base's text analyzer: tantivy's, run in Rust, for passages and queries.

One chain analyses a passage when tantivy indexes it (in tantivy's indexing threads,
the GIL released) and a query when it is searched, so their terms agree by
construction (as Lucene's ``EnglishAnalyzer`` does for index and query alike):

1. ``SimpleTokenizer``: runs of letters and digits (``char::is_alphanumeric``); the
   underscore and every other character split, as ``text.terms`` splits;
2. lowercase;
3. ASCII folding ("café" -> "cafe", "naïve" -> "naive");
4. ``text.STOP_WORDS`` dropped (English stop words and chat fillers such as "tell",
   "please", "explain"), before stemming, so "please" never stems into a term;
5. the Snowball English stemmer ("retries", "retried", "retrying" -> "retri";
   "connections", "connected" -> "connect").

A passage's document length (BM25's ``dl``) is the number of terms the chain emits.
Session memory keeps its own Python analysis (``text.terms``, a lighter stemmer):
it is ranked in Python over one session's few entries and never meets these terms.
"""

from __future__ import annotations

import tantivy

from switchboard_server.context.text import STOP_WORDS

NAME = "switchboard_en"  # the name the index's text field refers to


def build() -> tantivy.TextAnalyzer:
    """A new analyzer (register it on every ``tantivy.Index`` opened with the field)."""
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
        .filter(tantivy.Filter.custom_stopword(sorted(STOP_WORDS)))
        .filter(tantivy.Filter.stemmer("english"))
        .build()
    )


def query_terms(analyzer: tantivy.TextAnalyzer, text: str) -> list[str]:
    """Distinct terms of a query, in order of first appearance."""
    return list(dict.fromkeys(analyzer.analyze(text)))
