"""The generated code under clients/switchboard is exactly what `make proto` produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_generated_code_has_not_drifted(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    committed_root = ROOT / "clients"
    committed = {
        p.relative_to(committed_root): p.read_bytes()
        for p in (committed_root / "switchboard").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != "py.typed"
    }
    assert sorted(map(str, fresh)) == sorted(map(str, committed)), "files differ: run make proto"
    changed = [str(path) for path, data in fresh.items() if committed[path] != data]
    assert changed == [], "generated code is stale: run `make proto` and commit"
