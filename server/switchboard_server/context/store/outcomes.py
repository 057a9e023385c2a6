"""The recorded outcome of each context write, as JSON (idempotency keys, SQLite backend)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from switchboard_server.context.values import (
    AppendResult,
    DeleteResult,
    IngestResult,
    MemoryType,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Codec(Generic[T]):
    """How one write's result is kept under its request_id and read back."""

    encode: Callable[[T], str]
    decode: Callable[[str], T]


def _encode_append(result: AppendResult) -> str:
    return json.dumps(
        {
            "ids": list(result.entry_ids),
            "counts": {t.value: n for t, n in result.counts.items()},
            "evicted": {t.value: n for t, n in result.evicted.items()},
        }
    )


def _decode_append(text: str) -> AppendResult:
    data = json.loads(text)
    return AppendResult(
        tuple(data["ids"]),
        {MemoryType(t): int(n) for t, n in data["counts"].items()},
        {MemoryType(t): int(n) for t, n in data["evicted"].items()},
        replayed=True,
    )


def _encode_ingest(result: IngestResult) -> str:
    return json.dumps([result.document_count, result.passage_count, result.replaced_count])


def _decode_ingest(text: str) -> IngestResult:
    documents, passages, replaced = json.loads(text)
    return IngestResult(int(documents), int(passages), int(replaced))


def _encode_delete(result: DeleteResult) -> str:
    return json.dumps([result.deleted_count, list(result.missing_ids)])


def _decode_delete(text: str) -> DeleteResult:
    deleted, missing = json.loads(text)
    return DeleteResult(int(deleted), tuple(missing))


APPEND: Codec[AppendResult] = Codec(_encode_append, _decode_append)
CLEAR: Codec[int] = Codec(str, int)
INGEST: Codec[IngestResult] = Codec(_encode_ingest, _decode_ingest)
DELETE: Codec[DeleteResult] = Codec(_encode_delete, _decode_delete)
