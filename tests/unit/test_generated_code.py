"""The generated code under clients/switchboard and the edge's descriptor set are exactly
what `make proto` produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
DESCRIPTOR_SET = ROOT / "server" / "switchboard_server" / "mesh" / "api_descriptor.binpb"


def test_generated_code_has_not_drifted(tmp_path: Path) -> None:
    out = tmp_path / "clients"
    descriptor_set = tmp_path / "api_descriptor.binpb"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "gen_protos.py"),
            str(out),
            "--descriptor-set",
            str(descriptor_set),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    committed_root = ROOT / "clients"
    committed = {
        p.relative_to(committed_root): p.read_bytes()
        for p in (committed_root / "switchboard").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != "py.typed"
    }
    assert sorted(map(str, fresh)) == sorted(map(str, committed)), "files differ: run make proto"
    changed = [str(path) for path, data in fresh.items() if committed[path] != data]
    assert changed == [], "generated code is stale: run `make proto` and commit"
    assert DESCRIPTOR_SET.read_bytes() == descriptor_set.read_bytes(), (
        f"{DESCRIPTOR_SET.relative_to(ROOT)} is stale: run `make proto` and commit"
    )
