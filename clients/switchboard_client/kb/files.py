"""Files to knowledge-base sections: what ``switchboard kb ingest`` sends.

A file is read by its suffix: Markdown (``.md``, ``.markdown``), plain text (``.txt``),
HTML (``.html``, ``.htm``) and JSON Lines (``.jsonl``, one ``{"id", "title", "text",
"source"}`` object a line). Markdown and HTML are split at their headings into sections,
and a section longer than ``max_chars`` into parts at paragraph, then sentence ends (no
overlap: the server ranks passages with BM25, and a sentence counted in two passages would
score twice). Each section is one document whose id is the file's id, a colon, and the
heading's anchor (``help.billing.refunds.md:how-long-does-a-refund-take``; parts after
the first add ``.2``, ``.3``), so ingesting the file again replaces it section by section.
A JSON Lines record keeps its own id and is split by the server only.

A file is skipped, with the reason, when it is empty (no text once parsed), of an
unsupported type, too large (over ``max_file_bytes``; a record over ``max_doc_bytes``),
binary (a NUL byte or not UTF-8), or when a JSON Lines record is malformed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from switchboard_text.passages import split_passages

__all__ = [
    "SUPPORTED_SUFFIXES",
    "FileSections",
    "Section",
    "Skip",
    "chunk",
    "file_id",
    "load_file",
    "read_jsonl_ids",
    "slug",
    "walk",
]

MARKDOWN = frozenset({".md", ".markdown"})
HTML = frozenset({".html", ".htm"})
TEXT = frozenset({".txt"})
JSONL = frozenset({".jsonl"})
SUPPORTED_SUFFIXES = MARKDOWN | HTML | TEXT | JSONL
ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_ID = 128
_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"\*\*|__|`")


@dataclass(frozen=True, slots=True)
class Section:
    """One document to ingest."""

    id: str
    title: str
    text: str
    source: str


@dataclass(frozen=True, slots=True)
class Skip:
    """Something not ingested, and why."""

    source: str
    reason: str  # empty | unsupported type | too large | binary | malformed record


@dataclass(slots=True)
class FileSections:
    """What one file yields: its sections, the id prefix its sections share (None for
    JSON Lines, whose records name their own ids) and what was skipped."""

    source: str
    prefix: str | None
    sections: list[Section] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def walk(paths: Sequence[Path]) -> Iterator[Path]:
    """The files under ``paths`` (folders recursively, sorted; hidden entries skipped)."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path).parts
                if child.is_file() and not any(p.startswith(".") for p in rel):
                    yield child
        else:
            yield path


def source_name(path: Path, root: Path) -> str:
    """The path as it is recorded: relative to ``root`` when under it, else absolute."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def _fit(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, with a digest of the whole when cut."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    return f"{value[: limit - 11]}-{digest}"


def file_id(source: str) -> str:
    """A source path as an id part: ``/`` becomes ``.``, other characters outside the id
    alphabet ``-``; long paths keep their start and a digest. Never contains ``:``."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", source.strip("/").replace("/", "."))
    return _fit(value or "file", 96)


def slug(heading: str) -> str:
    """A heading's anchor, as GitHub spells it (lowercase, words joined by ``-``)."""
    value = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
    return value or "section"


def chunk(text: str, max_chars: int) -> list[str]:
    """``text`` in parts of at most ``max_chars``: whole paragraphs when they fit, else cut
    at sentence ends, and a longer sentence at its last space before the limit (the
    server's own passage splitting, :func:`switchboard_text.split_passages`)."""
    return split_passages(text, max_chars)


def _markdown(text: str) -> tuple[str, list[tuple[str, str | None, str]]]:
    """(document title, [(heading, anchor or None, body)]) of a Markdown text."""
    if text.startswith("---\n"):  # front matter: keep its title, drop the rest
        end = text.find("\n---", 4)
        if end != -1:
            front, text = text[4:end], text[end + 4 :]
            match = re.search(r"^title:\s*['\"]?(.*?)['\"]?\s*$", front, re.M)
            if match:
                text = f"# {match.group(1)}\n{text}"
    sections: list[tuple[str, str | None, list[str]]] = [("", None, [])]
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _ATX.match(line)
        if heading:
            sections.append((heading.group(2), None, []))
        else:
            sections[-1][2].append(_EMPHASIS.sub("", _LINK.sub(r"\1", line)))
    title = next((h for h, _, _ in sections if h), "")
    return title, [(h, a, "\n".join(body)) for h, a, body in sections]


class _HtmlSections(HTMLParser):
    """Text of an HTML page cut at ``h1``-``h6``; scripts, styles and navigation dropped."""

    _SKIP = frozenset({"script", "style", "nav", "noscript", "template", "head"})
    _BLOCK = frozenset({"p", "div", "li", "br", "tr", "section", "article", "pre", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.sections: list[tuple[str, str | None, list[str]]] = [("", None, [])]
        self._skipping = 0
        self._heading: list[str] | None = None
        self._anchor: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading = []
            self._anchor = dict(attrs).get("id")
        elif tag in self._BLOCK:
            self.sections[-1][2].append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.sections.append((" ".join("".join(self._heading).split()), self._anchor, []))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skipping:
            return
        elif self._heading is not None:
            self._heading.append(data)
        else:
            self.sections[-1][2].append(data)


def _html(text: str) -> tuple[str, list[tuple[str, str | None, str]]]:
    parser = _HtmlSections()
    parser.feed(text)
    parser.close()
    title = " ".join(parser.title.split()) or next((h for h, _, _ in parser.sections if h), "")
    return title, [(h, a, "".join(body)) for h, a, body in parser.sections]


def _sections(
    source: str, title: str, parts: list[tuple[str, str | None, str]], max_chars: int
) -> list[Section]:
    prefix = file_id(source)
    seen: dict[str, int] = {}
    out: list[Section] = []
    for heading, anchor, body in parts:
        texts = chunk(body, max_chars)
        if not texts:
            continue
        base = slug(anchor or heading) if (anchor or heading) else "intro"
        n = seen.get(base, 0)
        seen[base] = n + 1
        base = base if n == 0 else f"{base}-{n}"
        name = title if not heading or heading == title else f"{title} — {heading}"
        for i, part in enumerate(texts):
            anchor_id = base if i == 0 else f"{base}.{i + 1}"
            doc_id = _fit(f"{prefix}:{_fit(anchor_id, MAX_ID - len(prefix) - 1)}", MAX_ID)
            out.append(Section(doc_id, name or source, part, source))
    return out


def _jsonl(source: str, text: str, result: FileSections, max_doc_bytes: int) -> None:
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}:{n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            result.skipped.append(Skip(where, "malformed record (not JSON)"))
            continue
        if not isinstance(record, dict):
            result.skipped.append(Skip(where, "malformed record (not an object)"))
            continue
        doc_id, body = record.get("id"), record.get("text")
        if not isinstance(doc_id, str) or not ID_PATTERN.fullmatch(doc_id):
            result.skipped.append(Skip(where, "malformed record (id: 1-128 of A-Za-z0-9._:-)"))
        elif not isinstance(body, str) or not body.strip():
            result.skipped.append(Skip(where, "empty"))
        elif len(body.encode()) > max_doc_bytes:
            result.skipped.append(Skip(where, f"too large (over {max_doc_bytes} bytes)"))
        else:
            title = record.get("title")
            origin = record.get("source")
            result.sections.append(
                Section(
                    doc_id,
                    title if isinstance(title, str) else "",
                    body,
                    origin if isinstance(origin, str) and origin else source,
                )
            )


def load_file(
    path: Path, source: str, *, max_chars: int, max_file_bytes: int, max_doc_bytes: int
) -> FileSections:
    """The sections of one file (``source`` is its recorded name), or why it was skipped."""
    suffix = path.suffix.lower()
    result = FileSections(source, None if suffix in JSONL else file_id(source) + ":")
    if suffix not in SUPPORTED_SUFFIXES:
        result.skipped.append(Skip(source, f"unsupported type ({suffix or 'no suffix'})"))
        return result
    size = path.stat().st_size
    if size > max_file_bytes:
        result.skipped.append(Skip(source, f"too large ({size} bytes > {max_file_bytes})"))
        return result
    raw = path.read_bytes()
    try:
        if b"\x00" in raw:
            raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL byte")
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        result.skipped.append(Skip(source, "binary"))
        return result
    if suffix in JSONL:
        _jsonl(source, text, result, max_doc_bytes)
    else:
        if suffix in MARKDOWN:
            title, parts = _markdown(text)
        elif suffix in HTML:
            title, parts = _html(text)
        else:
            title, parts = "", [("", None, text)]
        result.sections = _sections(source, title or path.stem, parts, max_chars)
    if not result.sections and not result.skipped:
        result.skipped.append(Skip(source, "empty"))
    return result


def read_jsonl_ids(path: Path) -> list[str]:
    """The ids of a JSON Lines file's well-formed records."""
    ids: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            ids.append(record["id"])
    return ids
