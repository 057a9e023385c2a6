"""One passage splitter for the client and the server, in a package both installs have.

``switchboard kb ingest`` cuts a long section into documents and the context service
cuts a long document into passages; both must cut the same text at the same places, so
both call ``switchboard_text.split_passages``. The package ships in the client-only
install (no server extra), so it may import nothing but the standard library.
"""

from __future__ import annotations

import ast
import random
import sys
from pathlib import Path

import switchboard_text
from switchboard_client.kb import files
from switchboard_server.context import text
from switchboard_text import split_passages

PACKAGE = Path(switchboard_text.__file__).parent


def test_client_and_server_split_text_alike() -> None:
    assert text.split_passages is split_passages
    rng = random.Random(25)
    words = ["a", "Refunds", "take", "5-10", "days.", "Why?", "Yes!", "x" * 70, "\n", "\n\n"]
    for _ in range(500):
        sample = " ".join(rng.choice(words) for _ in range(rng.randint(0, 80)))
        limit = rng.choice([16, 40, 120, 4000])
        assert files.chunk(sample, limit) == text.split_passages(sample, limit), sample


def test_long_text_is_cut_at_paragraphs_then_sentences_then_spaces() -> None:
    sample = "First paragraph. It has two sentences.\n\nSecond one.\n\n" + "word " * 30
    assert split_passages(sample, 40) == [
        "First paragraph. It has two sentences.",  # a paragraph that fits stays whole
        "Second one.",
        *["word word word word word word word word"] * 3,  # cut at the last space
        "word word word word word word",
    ]
    assert split_passages(sample, 30)[:3] == [
        "First paragraph.",  # too long a paragraph: cut at its sentence ends
        "It has two sentences.",
        "Second one.",
    ]
    assert split_passages("  \n\n \t ", 10) == []
    assert split_passages("One.  Two\nlines.", 100) == ["One. Two lines."]


def test_the_shared_package_imports_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"__future__", "switchboard_text"}
    modules = sorted(PACKAGE.rglob("*.py"))
    assert modules, "switchboard_text has no modules"
    found: dict[str, list[str]] = {}
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            else:
                continue
            outside = [n for n in names if n.split(".")[0] not in allowed]
            if outside:
                found.setdefault(path.name, []).extend(outside)
    assert found == {}
