"""`python -m switchboard_server <service>` as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_service_that_cannot_get_ready_exits_non_zero_and_says_why(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
        "SWITCHBOARD_PORT": "0",
        "SWITCHBOARD_LOG_FORMAT": "json",
        "SWITCHBOARD_CLASSIFICATION_TRAIN_PATH": str(tmp_path / "missing.jsonl"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "switchboard_server", "classification"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "server.start_failed" in proc.stdout
    assert "missing.jsonl" in proc.stdout
