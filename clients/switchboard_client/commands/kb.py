"""``switchboard kb``: load, search and manage the context service's knowledge base.

``kb ingest PATH...`` reads Markdown, text, HTML and JSON Lines files (folders
recursively; see :mod:`switchboard_client.kb.files`), sends their sections in batches
through ``IngestDocuments`` (one idempotency key per batch, reused by its retries), removes
the sections a file no longer has, and prints what was added, replaced, removed and
skipped. ``kb search``, ``kb delete`` and ``kb stats`` do what they say. The address is
``--address``, else ``SWITCHBOARD_CONTEXT_TARGET``, else the local mesh
(:mod:`switchboard_client.kb.target`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

from switchboard.context.v1 import context_service_pb2 as pb
from switchboard_client._config import ConnectConfig
from switchboard_client._context import ContextClient
from switchboard_client._errors import (
    DeadlineExceeded,
    ResourceExhausted,
    SwitchboardError,
    Unavailable,
)
from switchboard_client.cli import Subparsers
from switchboard_client.kb import files
from switchboard_client.kb.target import TargetError, resolve

EXIT_OK = 0
EXIT_FAILED = 1
BATCH_BYTES = 4 * 1024 * 1024  # well under the 8 MiB message limit of client and server
RETRYABLE = (Unavailable, DeadlineExceeded, ResourceExhausted)
T = TypeVar("T")
U = TypeVar("U")


def register(subparsers: Subparsers) -> None:
    kb = subparsers.add_parser("kb", help="Load, search and manage the knowledge base.")
    sub = kb.add_subparsers(dest="kb_command", metavar="ACTION", required=True)

    ingest = sub.add_parser("ingest", help="Ingest Markdown, text, HTML and JSON Lines files.")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="Files or folders.")
    ingest.add_argument(
        "--root",
        type=Path,
        default=Path(),
        help="Paths are recorded (and ids derived) relative to this folder (default: .).",
    )
    ingest.add_argument(
        "--max-chars", type=int, default=700, help="Longest section part in characters (700)."
    )
    ingest.add_argument(
        "--batch-size", type=int, default=64, help="Documents per IngestDocuments call (64)."
    )
    ingest.add_argument(
        "--in-flight",
        type=int,
        default=2,
        help="Calls in flight at a time (2): the server stores one while it indexes another.",
    )
    ingest.add_argument(
        "--max-file-bytes", type=int, default=16 << 20, help="Larger files are skipped (16 MiB)."
    )
    ingest.add_argument(
        "--max-doc-bytes",
        type=int,
        default=65_536,
        help="Larger JSON Lines records are skipped (65536, the server's default limit).",
    )
    ingest.add_argument("--retries", type=int, default=3, help="Retries of a failed batch (3).")
    ingest.add_argument(
        "--no-prune",
        action="store_true",
        help="Keep sections that a re-ingested file no longer has.",
    )
    ingest.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Show a progress bar (default: when stderr is a terminal).",
    )
    ingest.add_argument("--json", action="store_true", help="Print the summary as JSON.")
    _common(ingest)
    ingest.set_defaults(func=_runner(_ingest))

    search = sub.add_parser("search", help="Ranked passages for a query.")
    search.add_argument("query", help="The question or keywords.")
    search.add_argument("-k", type=int, default=5, help="Number of passages (5, at most 50).")
    search.add_argument("--json", action="store_true", help="Print the passages as JSON.")
    _common(search)
    search.set_defaults(func=_runner(_search))

    delete = sub.add_parser("delete", help="Remove documents by id or by source file.")
    delete.add_argument("ids", nargs="*", metavar="ID", help="Document ids.")
    delete.add_argument(
        "--source",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="Every section ingested from this file, or from the files of this folder.",
    )
    delete.add_argument("--root", type=Path, default=Path(), help="As for ingest (default: .).")
    delete.add_argument("--json", action="store_true", help="Print the outcome as JSON.")
    _common(delete)
    delete.set_defaults(func=_runner(_delete))

    stats = sub.add_parser("stats", help="Documents, passages, size and last update.")
    stats.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    _common(stats)
    stats.set_defaults(func=_runner(_stats))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="The context service (default: $SWITCHBOARD_CONTEXT_TARGET, else the local mesh).",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="Deadline per call (30)."
    )


Command = Callable[[argparse.Namespace, ContextClient, TextIO, TextIO], Awaitable[int]]


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return asyncio.run(_connected(command, args, sys.stdout, sys.stderr))

    return run


async def _connected(command: Command, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        target = resolve(args.address)
    except TargetError as exc:
        print(f"switchboard kb: {exc}", file=err)
        return EXIT_FAILED
    config = ConnectConfig(target=target, timeout_s=args.timeout)
    async with ContextClient(config) as client:
        try:
            return await command(args, client, out, err)
        except SwitchboardError as exc:
            print(f"switchboard kb {args.kb_command}: {exc} (at {target})", file=err)
            return EXIT_FAILED


async def _retrying(call: Callable[[], Awaitable[T]], retries: int) -> T:
    """``call`` again after a retryable failure (it reuses its request id), with backoff."""
    for attempt in range(retries + 1):
        try:
            return await call()
        except RETRYABLE:
            if attempt == retries:
                raise
            await asyncio.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


async def _in_flight(items: Iterable[U], limit: int, work: Callable[[U], Awaitable[None]]) -> None:
    """``work`` on each item, ``limit`` at a time; the first failure stops the rest
    (what was sent before it stays written) and is raised."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:
            await work(item)

    tasks = [asyncio.ensure_future(worker()) for _ in range(limit)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- ingest -----------------------------------------------------------------------------


@dataclass
class IngestSummary:
    files: int = 0
    added: int = 0
    replaced: int = 0
    removed: int = 0
    passages: int = 0
    batches: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


def _batches(sections: Sequence[files.Section], size: int) -> Iterator[list[files.Section]]:
    batch: list[files.Section] = []
    used = 0
    for section in sections:
        cost = len(section.text.encode()) + len(section.title.encode()) + 256
        if batch and (len(batch) >= size or used + cost > BATCH_BYTES):
            yield batch
            batch, used = [], 0
        batch.append(section)
        used += cost
    if batch:
        yield batch


def _progress(enabled: bool | None, total: int, err: TextIO) -> AbstractContextManager[Any]:
    if not (err.isatty() if enabled is None else enabled):
        return nullcontext(None)
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:  # the bar comes with the server extra; the counts do not
        return nullcontext(None)
    return tqdm(total=total, unit="doc", desc="ingest", file=err)


def _read(
    args: argparse.Namespace, summary: IngestSummary
) -> tuple[list[files.FileSections], list[files.Section]]:
    """Every file's sections (ids unique across the run) and the skips, into ``summary``."""
    loaded: list[files.FileSections] = []
    sections: list[files.Section] = []
    seen: set[str] = set()
    for path in files.walk(args.paths):
        source = files.source_name(path, args.root)
        if not path.exists():
            summary.skipped.append({"source": source, "reason": "not found"})
            continue
        summary.files += 1
        result = files.load_file(
            path,
            source,
            max_chars=args.max_chars,
            max_file_bytes=args.max_file_bytes,
            max_doc_bytes=args.max_doc_bytes,
        )
        summary.skipped += [asdict(s) for s in result.skipped]
        for section in result.sections:
            if section.id in seen:
                summary.skipped.append({"source": section.id, "reason": "duplicate id"})
                continue
            seen.add(section.id)
            sections.append(section)
        loaded.append(result)
    return loaded, sections


async def _ingest(args: argparse.Namespace, client: ContextClient, out: TextIO, err: TextIO) -> int:
    summary = IngestSummary()
    loaded, sections = _read(args, summary)
    with _progress(args.progress, len(sections), err) as bar:

        async def send_batch(batch: list[files.Section]) -> None:
            key = str(uuid.uuid4())
            docs = [
                pb.Document(id=s.id, title=s.title, text=s.text, metadata={"source": s.source})
                for s in batch
            ]

            async def send() -> pb.IngestDocumentsResponse:
                return await client.ingest_documents(docs, request_id=key)

            response = await _retrying(send, args.retries)
            summary.batches += 1
            summary.added += response.document_count - response.replaced_count
            summary.replaced += response.replaced_count
            summary.passages += response.passage_count
            if bar is not None:
                bar.update(len(batch))

        await _in_flight(_batches(sections, args.batch_size), max(1, args.in_flight), send_batch)
    if not args.no_prune:
        summary.removed = await _prune(client, loaded, args.retries)
    _print_summary(summary, args.json, out)
    return EXIT_OK


async def _prune(client: ContextClient, loaded: Sequence[files.FileSections], retries: int) -> int:
    """Delete the sections of re-read files that they no longer have."""
    stale: list[str] = []
    for result in loaded:
        if result.prefix is None or any(s.reason != "empty" for s in result.skipped):
            continue  # JSON Lines name their own ids; an unread file keeps what it had
        keep = {s.id for s in result.sections}
        ids = await client.list_document_ids(result.prefix)
        stale += [i for i in ids if i not in keep]
    return (await _delete_ids(client, stale, retries))[0]


async def _delete_ids(
    client: ContextClient, ids: Sequence[str], retries: int, batch: int = 64
) -> tuple[int, list[str]]:
    deleted, missing = 0, []
    for start in range(0, len(ids), batch):
        key = str(uuid.uuid4())
        chunk = list(ids[start : start + batch])

        async def send(chunk: list[str] = chunk, key: str = key) -> pb.DeleteDocumentsResponse:
            return await client.delete_documents(chunk, request_id=key)

        response = await _retrying(send, retries)
        deleted += response.deleted_count
        missing += list(response.missing_ids)
    return deleted, missing


def _print_summary(summary: IngestSummary, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(asdict(summary), indent=2) + "\n")
        return
    out.write(
        f"{summary.files} files: {summary.added} sections added, {summary.replaced} replaced, "
        f"{summary.removed} removed (no longer in their file), {summary.passages} passages "
        f"in {summary.batches} batches; {len(summary.skipped)} skipped\n"
    )
    reasons: dict[str, list[str]] = {}
    for skip in summary.skipped:
        reasons.setdefault(skip["reason"].split(" (")[0], []).append(skip["source"])
    for reason, sources in sorted(reasons.items()):
        shown = ", ".join(sources[:5]) + (f", ... ({len(sources) - 5} more)" * (len(sources) > 5))
        out.write(f"  skipped {len(sources)} {reason}: {shown}\n")


# -- search, delete, stats --------------------------------------------------------------


async def _search(args: argparse.Namespace, client: ContextClient, out: TextIO, err: TextIO) -> int:
    response = await client.get_context(
        args.query, max_results=args.k, include_knowledge_base=True, max_context_chars=65_536
    )
    hits = [s for s in response.sources if s.kind == pb.SOURCE_KIND_KNOWLEDGE]
    rows = [
        {
            "rank": n,
            "score": round(s.relevance, 4),
            "document_id": s.document_id,
            "passage_id": s.id,
            "title": s.title,
            "source": s.metadata.get("source", ""),
            "text": s.content,
        }
        for n, s in enumerate(hits, 1)
    ]
    if args.json:
        out.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return EXIT_OK
    if not rows:
        print("no matching passages", file=err)
        return EXIT_OK
    out.write(f"{'#':>2}  {'score':>6}  {'document':<40}  source\n")
    for row in rows:
        snippet = " ".join(str(row["text"]).split())
        snippet = snippet if len(snippet) <= 96 else snippet[:95] + "…"
        out.write(
            f"{row['rank']:>2}  {row['score']:>6.3f}  {row['document_id']:<40}  {row['source']}\n"
            f"    {row['title']}\n    {snippet}\n"
        )
    return EXIT_OK


def _source_plan(path: Path, root: Path) -> tuple[list[str], list[str]]:
    """(ids, id prefixes) ingested from ``path``: a JSON Lines file's record ids, else the
    prefix of each file's sections (the file need not exist any more)."""
    ids: list[str] = []
    prefixes: list[str] = []
    for item in files.walk([path]) if path.is_dir() else [path]:
        suffix = item.suffix.lower()
        if suffix in files.JSONL:
            ids += files.read_jsonl_ids(item) if item.exists() else []
        elif suffix in files.SUPPORTED_SUFFIXES:
            prefixes.append(files.file_id(files.source_name(item, root)) + ":")
    return ids, prefixes


async def _delete(args: argparse.Namespace, client: ContextClient, out: TextIO, err: TextIO) -> int:
    if not args.ids and not args.source:
        print("switchboard kb delete: give document ids or --source PATH", file=err)
        return EXIT_FAILED
    ids = list(args.ids)
    for path in args.source:
        more, prefixes = _source_plan(path, args.root)
        ids += more
        for prefix in prefixes:
            ids += await client.list_document_ids(prefix)
    ids = list(dict.fromkeys(ids))
    deleted, missing = await _delete_ids(client, ids, 3)
    if args.json:
        out.write(json.dumps({"deleted": deleted, "missing_ids": missing}, indent=2) + "\n")
    else:
        out.write(f"deleted {deleted} documents\n")
        if missing:
            out.write(f"not found: {', '.join(missing)}\n")
    return EXIT_OK


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


async def _stats(args: argparse.Namespace, client: ContextClient, out: TextIO, err: TextIO) -> int:
    stats = await client.get_knowledge_stats()
    updated = (
        stats.last_update_time.ToDatetime().isoformat() + "Z"
        if stats.HasField("last_update_time")
        else None
    )
    if args.json:
        payload = {
            "documents": stats.document_count,
            "passages": stats.passage_count,
            "index_bytes": stats.index_bytes,
            "last_update": updated,
        }
        out.write(json.dumps(payload, indent=2) + "\n")
        return EXIT_OK
    out.write(f"documents    {stats.document_count}\n")
    out.write(f"passages     {stats.passage_count}\n")
    out.write(f"index size   {_size(stats.index_bytes) if stats.index_bytes else 'unknown'}\n")
    out.write(f"last update  {updated or 'unknown'}\n")
    return EXIT_OK
