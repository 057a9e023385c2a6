"""The README and docs/architecture.md name only paths that exist.

What counts as a named path, in a Markdown file:

* every entry of a fenced block whose info string is ``tree``: one entry per line, its
  first word, relative to the nearest less-indented entry above it that ends in ``/``
  (or to the repository root); ``<placeholder>`` and ``*`` match any name;
* every word in inline code and in other fenced blocks that looks like a path: it has a
  ``/`` and starts with a top-level entry of the repository (``server/...``,
  ``docs/``), or it ends in ``/`` or in a known file suffix (``domain.py``,
  ``store/``, ``classification/translate.py``). Those not rooted at the top must exist
  somewhere under it, with that ending. Words that start at a run-time location
  (``<data_dir>/...``, ``.venv/``, ``node_modules/``, ``.switchboard/``), URLs and
  absolute paths are not repository paths;
* every relative Markdown link target.

A path a page names and the repository lacks is a page that lies to its reader.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ("README.md", "docs/architecture.md")
PAGES = (
    "architecture",
    "classification",
    "context",
    "orchestration",
    "mesh",
    "observability",
    "operations",
    "benchmarks",
    "security",
)
README_MAX_LINES = 300
MIN_TREE_ENTRIES = {"README.md": 0, "docs/architecture.md": 50}

SUFFIXES = (".py", ".pyi", ".proto", ".yaml", ".yml", ".md", ".toml", ".json", ".jsonl", ".sh")
RUNTIME_ROOTS = (".venv/", "node_modules/", ".switchboard/", "<", "$", "~", "/", "-")
NOT_IN_A_PATH = re.compile(r"[\[\]{}=:@\"',;()|>]")
SKIPPED_DIRS = {".git", ".venv", "node_modules", ".switchboard", "build", "dist", "__pycache__"}

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
PLACEHOLDER = re.compile(r"<[^<>/]*>")


def repository_paths(root: Path) -> set[str]:
    """Every file and directory under ``root`` as a relative POSIX path (dirs end in /)."""
    found: set[str] = set()
    pending = [root]
    while pending:
        directory = pending.pop()
        for entry in directory.iterdir():
            if entry.name in SKIPPED_DIRS or entry.name.endswith(("_cache", ".egg-info")):
                continue
            relative = entry.relative_to(root).as_posix()
            if entry.is_dir():
                found.add(relative + "/")
                pending.append(entry)
            else:
                found.add(relative)
    return found


def tree_entries(block: str) -> list[str]:
    """The paths a ``tree`` block names, each relative to the repository root."""
    entries: list[str] = []
    parents: list[tuple[int, str]] = []  # (indent, directory path ending in /)
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        name = PLACEHOLDER.sub("*", line.split()[0])
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = (parents[-1][1] if parents else "") + name
        entries.append(path)
        if name.endswith("/"):
            parents.append((indent, path))
    return entries


def path_words(text: str, top_level: set[str]) -> list[str]:
    """Words of inline or fenced code that look like repository paths (see above)."""
    words = []
    for raw in text.split():
        word = raw.split("::")[0].rstrip(".")
        if not word or word.startswith(RUNTIME_ROOTS) or "://" in word:
            continue
        word = PLACEHOLDER.sub("*", word)
        if NOT_IN_A_PATH.search(word) or word.startswith("*"):
            continue
        rooted = "/" in word and word.split("/")[0] in top_level
        if rooted or word.endswith("/") or word.endswith(SUFFIXES):
            words.append(word)
    return words


def named_paths(markdown: str, top_level: set[str]) -> tuple[list[str], list[str]]:
    """(paths from ``tree`` blocks, relative to the root; path-like code words)."""
    rooted: list[str] = []
    words: list[str] = []
    for kind, body in FENCE.findall(markdown):
        if kind == "tree":
            rooted += tree_entries(body)
            for line in body.splitlines():
                words += path_words(" ".join(line.split()[1:]), top_level)
        else:
            words += path_words(body, top_level)
    for code in INLINE.findall(FENCE.sub("", markdown)):
        words += path_words(code, top_level)
    return rooted, words


def exists(path: str, paths: set[str], *, anywhere: bool) -> bool:
    """Whether ``path`` (a glob where it has ``*``) is in ``paths``; with ``anywhere``
    it may also be the ending of a longer path."""
    patterns = [path] + ([f"*/{path}"] if anywhere else [])
    if path.endswith("/"):
        candidates = {p for p in paths if p.endswith("/")}
    else:
        candidates = {p for p in paths if not p.endswith("/")} | {p.rstrip("/") for p in paths}
    return any(fnmatch.filter(candidates, pattern) for pattern in patterns)


def top_level(paths: set[str]) -> set[str]:
    return {p.rstrip("/") for p in paths if "/" not in p.rstrip("/")}


def unresolved(markdown: str, paths: set[str]) -> list[str]:
    """Every path ``markdown`` names that is not in ``paths``."""
    roots = top_level(paths)
    rooted, words = named_paths(markdown, roots)
    missing = [p for p in rooted if not exists(p, paths, anywhere=False)]
    for word in words:
        is_rooted = "/" in word and word.split("/")[0] in roots
        if not exists(word, paths, anywhere=not is_rooted):
            missing.append(word)
    return sorted(set(missing))


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    return broken


@pytest.fixture(scope="module")
def paths() -> set[str]:
    return repository_paths(ROOT)


@pytest.mark.parametrize("name", CHECKED)
def test_every_path_a_layout_page_names_exists(name: str, paths: set[str]) -> None:
    assert unresolved((ROOT / name).read_text(), paths) == []


@pytest.mark.parametrize("name", CHECKED)
def test_the_layout_pages_name_paths(name: str, paths: set[str]) -> None:
    """A page whose paths the rules above no longer see would pass for the wrong reason."""
    rooted, words = named_paths((ROOT / name).read_text(), top_level(paths))
    assert len(rooted) >= MIN_TREE_ENTRIES[name], "the layout is a ```tree block"
    assert words


def test_the_readme_is_a_guide_not_a_log() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES


def test_every_docs_page_exists_and_every_relative_link_resolves() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert {f"{p}.md" for p in PAGES} <= {p.name for p in pages}
    assert {p.name: broken_links(p) for p in pages} == {p.name: [] for p in pages}


def test_the_runbook_covers_every_alert() -> None:
    runbook = (ROOT / "docs" / "operations.md").read_text()
    headings = set(re.findall(r"^### (\S+)", runbook, re.MULTILINE))
    alerts = set()
    for rules in sorted((ROOT / "docker" / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(rules.read_text())["groups"]:
            alerts |= {rule["alert"] for rule in group["rules"] if "alert" in rule}
    assert alerts
    assert sorted(alerts - headings) == []


def test_the_rules_catch_what_they_should(paths: set[str]) -> None:
    """The rules themselves: a made-up page with wrong and right paths of each kind."""
    page = """
```tree
server/switchboard_server/
  app.py              fine
  nowhere.py          missing
protos/switchboard/<service>/v1/   a placeholder
```
Run `server/switchboard_server/missing_too.py` or `scripts/settings_doc.py`; the
`classification/translate_nope.py` module, `store/` and `made_up_dir/`; not
`<data_dir>/mesh/state.json`, `.venv/bin/python`, `l1/l2[/l3]`, `general/fallback`.
```sh
python server/switchboard_server/gone.py --out /tmp/x http://127.0.0.1:1/a.py
```
"""
    missing = unresolved(page, paths)
    assert missing == [
        "classification/translate_nope.py",
        "made_up_dir/",
        "server/switchboard_server/gone.py",
        "server/switchboard_server/missing_too.py",
        "server/switchboard_server/nowhere.py",
    ]
