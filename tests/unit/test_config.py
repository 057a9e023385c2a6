"""Settings are read once from the environment and a bad value names its variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import settings_doc
from switchboard_server.config import (
    ConfigError,
    CoreSettings,
    ServiceName,
    load_settings,
    settings_table,
)


def test_defaults_are_sane(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.core.data_dir == Path(".switchboard/data")
    assert settings.core.max_text_bytes == 4096
    assert settings.core.port_for(ServiceName.CONTEXT) == 50052
    assert settings.core.data_dir_for(ServiceName.CONTEXT) == Path(".switchboard/data/context")


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_PORT", "0")
    monkeypatch.setenv("SWITCHBOARD_GRACE_PERIOD_S", "1.5")
    settings = load_settings()
    assert settings.core.port_for(ServiceName.CLASSIFICATION) == 0
    assert settings.core.grace_period_s == 1.5


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SWITCHBOARD_PORT", "not-a-port"),
        ("SWITCHBOARD_PORT", "70000"),
        ("SWITCHBOARD_MAX_TEXT_BYTES", "-1"),
        ("SWITCHBOARD_LOG_LEVEL", "loud"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_index_heap_must_cover_every_writer_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """tantivy refuses a writer with under 15 MB per thread: refused at start, named."""
    monkeypatch.setenv("SWITCHBOARD_CONTEXT_INDEX_WRITER_THREADS", "5")
    with pytest.raises(ConfigError, match=r"SWITCHBOARD_CONTEXT_INDEX_HEAP_MB .*\(64 MB for 5\)"):
        load_settings()
    monkeypatch.setenv("SWITCHBOARD_CONTEXT_INDEX_HEAP_MB", "75")
    assert load_settings().context.index_writer_threads == 5


def test_settings_are_frozen() -> None:
    settings = CoreSettings()
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1


def test_every_setting_is_documented() -> None:
    rows = settings_table()
    assert len({name for name, _, _ in rows}) == len(rows)
    undocumented = [name for name, _, description in rows if not description]
    assert undocumented == []
    page = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    missing = [name for name, _, _ in rows if name not in page]
    assert missing == [], "settings missing from docs/operations.md"


def test_the_settings_table_in_the_docs_is_current() -> None:
    page = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    _, _, rest = page.partition(settings_doc.BEGIN)
    table, found, _ = rest.partition(settings_doc.END)
    assert found, "docs/operations.md has no settings table"
    assert table.strip() == settings_doc.render(), "run scripts/settings_doc.py"


def test_bad_setting_exits_2_with_the_variable_named(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SWITCHBOARD_GRACE_PERIOD_S": "soon",
        "SWITCHBOARD_DATA_DIR": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "switchboard_server", "context"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "SWITCHBOARD_GRACE_PERIOD_S" in proc.stderr
