from __future__ import annotations

from pathlib import Path

import pytest

from switchboard_server.classification.dataset import DatasetError, Example, load_jsonl
from switchboard_server.classification.sources import bundled_hwu64


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_loads_hierarchical_flat_and_oos_labels(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl",
        '{"text": "wake me up", "intent": "alarm/set"}',
        "",
        '{"text": "where is my card", "intent": "card_arrival"}',
        '{"text": "  how tall is a giraffe  ", "intent": "oos"}',
        '{"text": "dim the lamp", "intent": "iot/lights/dim"}',
    )
    examples = load_jsonl(path)
    assert examples == [
        Example("wake me up", "alarm/set"),
        Example("where is my card", "card_arrival"),
        Example("how tall is a giraffe", "oos"),
        Example("dim the lamp", "iot/lights/dim"),
    ]
    assert [e.in_scope for e in examples] == [True, True, False, True]


def test_every_bad_line_is_reported_with_file_and_line_and_nothing_loads(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path / "bad.jsonl",
        '{"text": "fine", "intent": "alarm/set"}',
        "{not json",
        '{"text": "", "intent": "alarm/set"}',
        '{"text": "upper", "intent": "Alarm/Set"}',
        '{"text": "deep", "intent": "a/b/c/d"}',
        '["a list"]',
        '{"text": "no intent"}',
    )
    with pytest.raises(DatasetError) as info:
        load_jsonl(path)
    problems = info.value.problems
    assert [p.split(": ")[0] for p in problems] == [f"{path}:{n}" for n in (2, 3, 4, 5, 6, 7)]
    assert "not valid JSON" in problems[0]
    assert "'text' must be a non-empty string" in problems[1]
    assert "'alarm/set' (" in problems[2]  # the clash names both labels and the first line
    assert f"{path}:1) and 'Alarm/Set' both normalize to 'alarm/set'" in problems[2]
    assert "at most 3" in problems[3]
    assert f"{path}:2" in str(info.value)


def test_empty_and_missing_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="holds no examples"):
        load_jsonl(write(tmp_path / "empty.jsonl", ""))
    with pytest.raises(DatasetError, match="cannot read"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_bundled_hwu64_is_complete_and_carries_its_licence() -> None:
    train = load_jsonl(bundled_hwu64("train"))
    test = load_jsonl(bundled_hwu64("test"))
    assert len(train) == 8954
    assert len(test) == 1076
    assert len({e.intent for e in train}) == 64
    assert len({e.intent.split("/")[0] for e in train}) == 18
    notice = (bundled_hwu64("train").parent / "NOTICE.md").read_text()
    assert "CC BY 4.0" in notice
    assert "Liu" in notice
