"""``switchboard kb`` end to end against a real ``python -m switchboard_server context``.

The shipped help centre (tests/data/helpcentre: Markdown and HTML pages) is ingested with
files that must be skipped beside it; ``kb search`` ranks the labelled section first for
every lexical query of tests/data/helpcentre_queries.yaml; a re-ingest replaces, an edit
removes the section that went away, ``kb delete`` removes by source and by id, and
``kb stats`` follows.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard_client.cli import main
from switchboard_server.testing import free_port, stop_process, sync_probe_channel, wait_serving
from tests.support.context import start_server

DATA = Path(__file__).resolve().parents[2] / "data"
SECTIONS = 23  # sections of the shipped help centre


def labelled(kind: str) -> list[dict[str, str]]:
    cases = yaml.safe_load((DATA / "helpcentre_queries.yaml").read_text())
    return [c for c in cases if c["kind"] == kind]


@pytest.fixture
def address(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_CONTEXT_SEED_DEFAULT_KNOWLEDGE": "false",
        # The lexical promise; test_context_hybrid measures what hybrid ranking adds.
        "SWITCHBOARD_CONTEXT_HYBRID": "off",
    }
    log = tmp_path / "server.log"
    proc = start_server(env, log)
    try:
        with sync_probe_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, proc, exited=log.read_text)
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(proc)


def kb(capsys: pytest.CaptureFixture[str], address: str, *argv: str) -> Any:
    """Run ``switchboard kb ... --json`` in process; its parsed stdout."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["kb", *argv, "--address", address, "--json"])
    captured = capsys.readouterr()
    assert exited.value.code == 0, captured.err
    return json.loads(captured.out)


def kb_text(capsys: pytest.CaptureFixture[str], address: str, *argv: str) -> str:
    """Run ``switchboard kb ...`` in process without ``--json``; its stdout."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["kb", *argv, "--address", address])
    captured = capsys.readouterr()
    assert exited.value.code == 0, captured.err
    return captured.out


def search_first(capsys: pytest.CaptureFixture[str], address: str, query: str) -> str:
    rows = kb(capsys, address, "search", query, "-k", "3")
    return str(rows[0]["document_id"]) if rows else ""


def test_ingest_search_reingest_delete_stats(
    tmp_path: Path, address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "docs"
    corpus = root / "helpcentre"
    shutil.copytree(DATA / "helpcentre", corpus)
    (corpus / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (corpus / "broken.md").write_bytes(b"# Title\n\x00\x01\x02 not text")
    (corpus / "empty.md").write_text("# Only a heading\n\n   \n")
    (corpus / "huge.txt").write_text("word " * 2000)
    ingest = ["ingest", str(corpus), "--root", str(root), "--max-file-bytes", "8000"]

    first = kb(capsys, address, *ingest, "--batch-size", "5")
    assert (first["files"], first["added"], first["replaced"]) == (11, SECTIONS, 0)
    assert first["batches"] == 5  # 23 sections, 5 a call
    reasons = {s["source"].rsplit("/", 1)[-1]: s["reason"] for s in first["skipped"]}
    assert reasons == {
        "logo.png": "unsupported type (.png)",
        "broken.md": "binary",
        "empty.md": "empty",
        "huge.txt": "too large (10000 bytes > 8000)",
    }

    for case in labelled("lexical"):
        assert search_first(capsys, address, case["query"]) == case["expect"], case["query"]
    row = kb(capsys, address, "search", "publish a note with a public link", "-k", "1")[0]
    assert row["source"] == "helpcentre/sharing.html"
    assert row["title"] == "Sharing and collaboration — Publish a note with a public link"
    assert 0 < row["score"] <= 1

    table = kb_text(capsys, address, "search", "how do I get a refund?", "-k", "2")
    assert table.splitlines()[1].split()[2:] == [
        "helpcentre.billing.invoices.md:refunds",
        "helpcentre/billing/invoices.md",
    ]
    assert "You can ask for a full refund" in table
    text = kb_text(capsys, address, *ingest, "--no-progress")
    assert text.startswith("11 files: 0 sections added, 23 replaced, 0 removed")
    assert "skipped 1 binary: helpcentre/broken.md" in text
    assert "documents    23" in kb_text(capsys, address, "stats")

    again = kb(capsys, address, *ingest)
    assert (again["added"], again["replaced"], again["removed"]) == (0, SECTIONS, 0)

    sync = corpus / "sync.md"
    sync.write_text(sync.read_text().split("## Sync is stuck")[0])
    edited = kb(capsys, address, "ingest", str(sync), "--root", str(root))
    assert (edited["added"], edited["replaced"], edited["removed"]) == (0, 2, 1)
    assert search_first(capsys, address, "sync icon keeps spinning") != (
        "helpcentre.sync.md:sync-is-stuck"
    )

    stats = kb(capsys, address, "stats")
    assert (stats["documents"], stats["passages"]) == (SECTIONS - 1, SECTIONS - 1)
    assert stats["index_bytes"] > 0
    assert stats["last_update"] is not None

    invoices = corpus / "billing" / "invoices.md"
    invoices.unlink()  # deleting by source works for a file that is gone
    gone = kb(capsys, address, "delete", "--source", str(invoices), "--root", str(root))
    assert gone == {"deleted": 5, "missing_ids": []}
    assert search_first(capsys, address, "download a PDF invoice") != (
        "helpcentre.billing.invoices.md:download-an-invoice"
    )
    by_id = kb(capsys, address, "delete", "helpcentre.export.md:export-your-notes", "nope:x")
    assert by_id == {"deleted": 1, "missing_ids": ["nope:x"]}
    folder = kb(capsys, address, "delete", "--source", str(corpus / "account"), "--root", str(root))
    assert folder["deleted"] == 7
    assert kb(capsys, address, "stats")["documents"] == SECTIONS - 1 - 5 - 1 - 7


def test_without_address_or_mesh_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SWITCHBOARD_CONTEXT_TARGET", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["kb", "stats"])
    assert exited.value.code == 1
    assert "pass --address HOST:PORT" in capsys.readouterr().err
