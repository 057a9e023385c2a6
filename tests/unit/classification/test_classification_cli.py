"""``switchboard train`` / ``switchboard eval`` through the real CLI parser."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from switchboard_client.cli import build_parser
from switchboard_server.classification.artifacts import ArtifactStore
from switchboard_server.classification.dataset import Example
from tests.support.classification import small_examples

EVAL_KEYS = {
    "n",
    "accuracy",
    "accuracy_l1",
    "macro_f1",
    "oos_recall",
    "oos_precision",
    "latency_ms_p50",
    "latency_ms_p99",
    "backend",
}


def write(path: Path, examples: list[Example]) -> Path:
    path.write_text(
        "".join(json.dumps({"text": e.text, "intent": e.intent}) + "\n" for e in examples)
    )
    return path


def run(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return int(args.func(args))


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path / "state"))
    examples = small_examples()
    return write(tmp_path / "train.jsonl", examples[::2]), write(
        tmp_path / "test.jsonl", examples[1::2]
    )


def test_train_writes_the_artifact_the_service_will_load(
    data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, _ = data
    assert run("train", "--data", str(train)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["backend"] == "tfidf"
    assert summary["intents"] == 5
    assert Path(summary["artifact"]).exists()
    store = ArtifactStore(tmp_path / "state" / "classification", keep=5)
    active = store.read_active()
    assert active is not None
    assert active["train_path"] == str(train.resolve())
    assert summary["model_version"].endswith(active["artifact_key"][:12])


def test_eval_prints_the_documented_json_keys(
    data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = data
    oos = write(tmp_path / "oos.jsonl", [Example("how tall is mount everest", "oos")])
    assert run("eval", "--data", str(test), "--train", str(train), "--oos", str(oos), "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= EVAL_KEYS
    assert report["n"] == len(small_examples()) // 2
    assert report["accuracy"] >= 80.0
    assert report["accuracy_l1"] >= report["accuracy"]
    assert report["oos_recall"] in (0.0, 100.0)
    assert report["backend"] == "tfidf"
    assert not (tmp_path / "state" / "classification" / "models").exists()  # --train saves nothing
    assert run("eval", "--data", str(test), "--train", str(train), "--json") == 0
    assert json.loads(capsys.readouterr().out)["oos_precision"] is None


def test_eval_of_the_current_model_and_a_human_table(
    data: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    train, test = data
    assert run("train", "--data", str(train)) == 0
    capsys.readouterr()
    assert run("eval", "--data", str(test)) == 0
    out = capsys.readouterr().out
    assert "accuracy (intent)" in out
    assert "latency p50 / p99" in out


def test_bad_dataset_lines_fail_with_file_and_line(
    data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "intent": "a/b"}\n{"text": 3, "intent": "a/b"}\n')
    assert run("train", "--data", str(bad)) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2: 'text' must be a non-empty string" in err
    assert not (tmp_path / "state" / "classification" / "active.json").exists()
