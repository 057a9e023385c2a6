"""``switchboard examples add``: teach the classification service texts under one label.

FILE is what ``switchboard discover`` wrote (pick clusters with ``--cluster``; required
when it holds more than one) or a text file with one utterance per line. The texts go
through ``AddExamples`` in batches, each call with its own ``request_id``. The ids are
derived from the file's content, the clusters, the label and the batch number (UUID v5),
so running the same command again after a failure resends the same keys: the server
answers the batches it already stored with their first outcome and stores them once.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

from switchboard_client._classification import ClassificationClient
from switchboard_client._config import DEFAULT_TARGET, TARGET_ENV, ConnectConfig
from switchboard_client._errors import SwitchboardError
from switchboard_client.cli import Subparsers

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_BATCH = 100
NAMESPACE = uuid.UUID("6f6b5d3e-2c1a-4b8e-9a57-3d0c6e1f2a26")  # switchboard examples add


class UsageError(ValueError):
    """The file or the flags do not say which texts to add."""


def register(subparsers: Subparsers) -> None:
    examples = subparsers.add_parser("examples", help="Teach the classifier labelled examples.")
    actions = examples.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser(
        "add",
        help="Add texts under one label through AddExamples.",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    add.add_argument(
        "file", type=Path, metavar="FILE", help="switchboard discover output, or one text a line."
    )
    add.add_argument("--label", required=True, help="Intent path for every text (l1/l2[/l3]).")
    add.add_argument(
        "--cluster",
        type=int,
        action="append",
        metavar="N",
        help="Cluster number of a discover file (repeat for several).",
    )
    add.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"Texts per AddExamples call (default {DEFAULT_BATCH}).",
    )
    add.add_argument(
        "--target",
        metavar="HOST:PORT",
        help=f"host:port of the classification service or its sidecar "
        f"(default: ${TARGET_ENV} or {DEFAULT_TARGET}).",
    )
    add.add_argument("--timeout", type=float, metavar="SECONDS", help="Deadline per call.")
    add.set_defaults(func=run_add)


def texts_of(path: Path, clusters: list[int] | None) -> list[str]:
    """The texts to add: the chosen clusters of a discover file, or every line of a text file."""
    content = path.read_text(encoding="utf-8")
    record: Any = None
    if path.suffix.lower() == ".json":
        try:
            record = json.loads(content)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} is not valid JSON ({exc.msg})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("clusters"), list):
        if clusters:
            raise UsageError(f"{path} is not a switchboard discover file; drop --cluster")
        return [line.strip() for line in content.splitlines() if line.strip()]
    by_number = {c["cluster"]: c for c in record["clusters"]}
    if not clusters:
        if len(by_number) != 1:
            raise UsageError(
                f"{path} holds {len(by_number)} clusters; choose with --cluster N "
                f"(one of {sorted(by_number)})"
            )
        clusters = list(by_number)
    unknown = [n for n in clusters if n not in by_number]
    if unknown:
        raise UsageError(f"{path} has no cluster {unknown[0]} (it has {sorted(by_number)})")
    texts: list[str] = []
    for number in clusters:
        texts.extend(t for t in by_number[number]["texts"] if t not in texts)
    return texts


def request_ids(path: Path, clusters: list[int] | None, label: str, batches: int) -> list[str]:
    """One deterministic UUID per batch: the same command yields the same keys."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    base = f"{digest}|{sorted(clusters or [])}|{label}"
    return [str(uuid.uuid5(NAMESPACE, f"{base}|{i}")) for i in range(batches)]


async def add(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        texts = texts_of(args.file, args.cluster)
    except (OSError, UnicodeDecodeError, UsageError) as exc:
        print(f"switchboard examples add: {exc}", file=err)
        return EXIT_USAGE
    if not texts:
        print(f"switchboard examples add: no texts in {args.file}", file=err)
        return EXIT_USAGE
    size = max(1, args.batch_size)
    batches = [texts[i : i + size] for i in range(0, len(texts), size)]
    keys = request_ids(args.file, args.cluster, args.label, len(batches))
    config = ConnectConfig.from_env(target=args.target, timeout_s=args.timeout)
    async with ClassificationClient(config) as client:
        for batch, key in zip(batches, keys, strict=True):
            try:
                response = await client.add_examples(
                    [(text, args.label) for text in batch], request_id=key
                )
            except SwitchboardError as exc:
                print(f"error: {exc}", file=err)
                print(f"request_id: {key} (run the same command again to retry)", file=err)
                return EXIT_FAILED
            new = ", ".join(response.new_intents) or "-"
            print(
                f"added {response.added_count} examples as {args.label} "
                f"(request_id {key}; run-time examples {response.runtime_example_count}; "
                f"new intents: {new})",
                file=out,
            )
    return EXIT_OK


def run_add(args: argparse.Namespace) -> int:
    return asyncio.run(add(args, sys.stdout, sys.stderr))
