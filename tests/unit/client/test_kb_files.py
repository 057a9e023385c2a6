"""Reading files into knowledge-base sections, and finding the context service."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from switchboard_client.kb import files
from switchboard_client.kb.target import DEFAULT_DATA_DIR, TargetError, resolve
from switchboard_server.config import CoreSettings


def load(path: Path, **limits: int) -> files.FileSections:
    options = {"max_chars": 700, "max_file_bytes": 1 << 20, "max_doc_bytes": 65536} | limits
    return files.load_file(path, path.name, **options)


def test_markdown_sections_ids_and_titles(tmp_path: Path) -> None:
    page = tmp_path / "guide.md"
    page.write_text(
        "Intro text.\n\n# The Guide\n\nFirst.\n\n## Setup\n\nRun **it**, see [docs](x.md).\n"
        "```\n# not a heading\n```\n## Setup\n\nAgain.\n"
    )
    got = [(s.id, s.title, s.text) for s in load(page).sections]
    assert got == [
        ("guide.md:intro", "The Guide", "Intro text."),
        ("guide.md:the-guide", "The Guide", "First."),
        ("guide.md:setup", "The Guide — Setup", "Run it, see docs. # not a heading"),
        ("guide.md:setup-1", "The Guide — Setup", "Again."),
    ]


def test_long_sections_split_into_numbered_parts_without_overlap(tmp_path: Path) -> None:
    page = tmp_path / "long.md"
    sentences = [f"Sentence number {i} is here." for i in range(40)]
    page.write_text("## Long\n\n" + " ".join(sentences))
    parts = load(page, max_chars=200).sections
    assert [p.id for p in parts][:3] == ["long.md:long", "long.md:long.2", "long.md:long.3"]
    assert all(len(p.text) <= 200 for p in parts)
    assert " ".join(p.text for p in parts) == " ".join(sentences)


def test_html_headings_anchors_and_dropped_scripts(tmp_path: Path) -> None:
    page = tmp_path / "faq.html"
    page.write_text(
        "<html><head><title>FAQ</title><script>var x;</script></head><body><nav>menu</nav>"
        "<h2 id='pay'>Paying</h2><p>By card &amp; debit.</p><h2>Other things</h2><p>Yes."
        "</p><script>track()</script></body></html>"
    )
    got = [(s.id, s.title, s.text) for s in load(page).sections]
    assert got == [
        ("faq.html:pay", "FAQ — Paying", "By card & debit."),
        ("faq.html:other-things", "FAQ — Other things", "Yes."),
    ]


def test_jsonl_records_and_their_skips(tmp_path: Path) -> None:
    path = tmp_path / "kb.jsonl"
    lines = [
        json.dumps({"id": "r1", "title": "One", "text": "first", "source": "https://x/1"}),
        "not json",
        json.dumps({"id": "bad id", "text": "x"}),
        json.dumps({"id": "r2", "text": "  "}),
        json.dumps({"id": "r3", "text": "y" * 100}),
        json.dumps(["list"]),
    ]
    path.write_text("\n".join(lines) + "\n")
    result = load(path, max_doc_bytes=50)
    assert result.prefix is None
    assert [(s.id, s.title, s.source) for s in result.sections] == [("r1", "One", "https://x/1")]
    assert [(s.source, s.reason.split(" (")[0]) for s in result.skipped] == [
        ("kb.jsonl:2", "malformed record"),
        ("kb.jsonl:3", "malformed record"),
        ("kb.jsonl:4", "empty"),
        ("kb.jsonl:5", "too large"),
        ("kb.jsonl:6", "malformed record"),
    ]
    assert files.read_jsonl_ids(path) == ["r1", "bad id", "r2", "r3"]


def test_ids_are_valid_and_bounded_for_any_path() -> None:
    deep = "/".join(["a very long folder name"] * 10) + "/päge (1).md"
    prefix = files.file_id(deep)
    assert files.ID_PATTERN.fullmatch(prefix)
    assert ":" not in prefix
    assert files.file_id(deep) == prefix  # stable: a re-ingest replaces
    assert files.file_id(deep.replace("10", "11")) == prefix
    assert files.file_id(deep + "x") != prefix  # the digest keeps long paths apart


def test_walk_skips_hidden_entries_and_sorts(tmp_path: Path) -> None:
    for name in ["b.md", "a/c.md", ".git/x.md", "a/.hidden.md"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert [p.relative_to(tmp_path).as_posix() for p in files.walk([tmp_path])] == [
        "a/c.md",
        "b.md",
    ]


def test_target_prefers_address_then_env_then_the_running_mesh(tmp_path: Path) -> None:
    env = {"SWITCHBOARD_DATA_DIR": str(tmp_path)}
    assert resolve("h:1", env) == "h:1"
    assert resolve(None, env | {"SWITCHBOARD_CONTEXT_TARGET": "h:2"}) == "h:2"
    with pytest.raises(TargetError, match="no local mesh state"):
        resolve(None, env)
    state = tmp_path / "mesh" / "state.json"
    state.parent.mkdir()
    processes = [
        {"name": "context-0.sidecar", "role": "sidecar", "endpoints": {"grpc": "h:10052"}},
        {"name": "context-0", "role": "app", "endpoints": {"grpc": "127.0.0.1:50052"}},
    ]
    state.write_text(
        json.dumps({"supervisor_pid": os.getpid(), "status": "healthy", "processes": processes})
    )
    assert resolve(None, env) == "127.0.0.1:50052"
    state.write_text(json.dumps({"supervisor_pid": os.getpid(), "status": "stopped"}))
    with pytest.raises(TargetError, match="not running"):
        resolve(None, env)


def test_default_data_dir_is_the_servers() -> None:
    assert CoreSettings.model_fields["data_dir"].default == DEFAULT_DATA_DIR
