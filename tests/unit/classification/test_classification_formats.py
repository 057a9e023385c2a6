"""Datasets in: CSV, Rasa NLU YAML and JSON Lines with unruly labels, loaded and trained on."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from switchboard_client.cli import build_parser
from switchboard_server.classification.dataset import DatasetError, Example
from switchboard_server.classification.formats import DatasetSpec, load_dataset
from switchboard_server.classification.labels import LabelMap, normalize_label
from switchboard_server.classification.model import TrainedModel

DATA = Path(__file__).parents[2] / "data" / "datasets"
BANKING_RENAMED = {
    "card_arrival": "Card Arrival",
    "exchange_rate": "exchange rate",
    "refund_not_showing_up": "Refund_not_showing_up",
    "reverted_card_payment": "reverted_card_payment?",
}


def run(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return int(args.func(args))


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path / "state"))
    return tmp_path / "state" / "classification"


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("Refund_not_showing_up", "refund_not_showing_up"),
        ("reverted_card_payment?", "reverted_card_payment"),
        ("Book Flight", "book_flight"),
        ("  Café / Opening Hours!! ", "cafe/opening_hours"),
        ("alarm/set", "alarm/set"),
        ("?!", None),
        ("a/b/c/d", None),
    ],
)
def test_labels_are_normalized_to_the_grammar(raw: str, label: str | None) -> None:
    assert normalize_label(raw) == label


def test_csv_with_other_columns_loads_with_labels_normalized_and_mapped() -> None:
    labels = LabelMap()
    spec = DatasetSpec(label_column="category")
    examples = load_dataset(DATA / "banking.csv", spec, labels)
    assert len(examples) == 32
    assert examples[0] == Example("my refund has not shown up yet", "refund_not_showing_up")
    assert {e.intent for e in examples} == set(BANKING_RENAMED)
    assert labels.renamed == BANKING_RENAMED


def test_rasa_nlu_yaml_loads_intents_and_strips_entity_annotations() -> None:
    labels = LabelMap()
    examples = load_dataset(DATA / "rasa_nlu.yml", labels=labels)
    by_intent: dict[str, list[str]] = {}
    for e in examples:
        by_intent.setdefault(e.intent, []).append(e.text)
    assert sorted(by_intent) == ["book_flight", "chitchat/ask_weather", "greet"]
    assert all(len(texts) == 6 for texts in by_intent.values())  # synonym/regex skipped
    assert "hi Sara" in by_intent["greet"]
    assert "hello Bob" in by_intent["greet"]
    assert "I need a plane ticket to Berlin on friday" in by_intent["book_flight"]
    assert "what's the weather like" in by_intent["chitchat/ask_weather"]
    assert labels.renamed == {"book_flight": "Book Flight", "greet": "Greet"}


def test_a_clash_after_normalization_names_both_labels_and_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "clash.csv"
    path.write_text("text,label\nwhere is my card,Card Arrival\nmy card is late,card_arrival\n")
    with pytest.raises(DatasetError) as info:
        load_dataset(path)
    (problem,) = info.value.problems
    assert problem == (
        f"{path}:3: labels 'Card Arrival' ({path}:2) and 'card_arrival' both normalize "
        "to 'card_arrival'; rename one of them"
    )


def test_a_clash_across_train_and_validation_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("text,label\nwhere is my card,Card Arrival\n")
    (tmp_path / "v.csv").write_text("text,label\nmy card is late,card arrival?\n")
    labels = LabelMap()
    load_dataset(tmp_path / "t.csv", labels=labels)
    with pytest.raises(DatasetError, match=r"'Card Arrival'.*'card arrival\?'"):
        load_dataset(tmp_path / "v.csv", labels=labels)


def test_bad_csv_and_rasa_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text('text,label\nok,a\n,b\n"multi\nline text",???\nthree,fields,here\nfine,c\n')
    with pytest.raises(DatasetError) as info:
        load_dataset(csv_path)
    assert info.value.problems == (
        f"{csv_path}:3: column 'text' must be a non-empty string",
        f"{csv_path}:4: label '???' has no letters or digits in some level",
        f"{csv_path}:6: has 3 fields; the header has 2",
    )
    rasa = tmp_path / "bad.yml"
    rasa.write_text(
        "nlu:\n- intent: greet\n  examples: |\n    - hi\n    hello\n    -   \n"
        "- intent: '!!'\n  examples: |\n    - yo\n"
    )
    with pytest.raises(DatasetError) as info:
        load_dataset(rasa)
    assert info.value.problems == (
        f"{rasa}:5: an example line must start with '- '",
        f"{rasa}:6: the example must be a non-empty string",
        f"{rasa}:9: label '!!' has no letters or digits in some level",
    )


def test_missing_columns_and_unknown_extensions_say_which_flag_to_use(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no column 'label'.*--label-column"):
        load_dataset(DATA / "banking.csv")
    odd = tmp_path / "banking.txt"
    odd.write_bytes((DATA / "banking.csv").read_bytes())
    with pytest.raises(DatasetError, match=r"unknown extension '\.txt'.*--format"):
        load_dataset(odd)
    assert len(load_dataset(odd, DatasetSpec("csv", label_column="category"))) == 32


@pytest.mark.parametrize(
    ("name", "flags", "renamed"),
    [
        ("banking.csv", ("--label-column", "category"), BANKING_RENAMED),
        ("banking.jsonl", (), BANKING_RENAMED),
        ("rasa_nlu.yml", (), {"book_flight": "Book Flight", "greet": "Greet"}),
    ],
)
def test_train_on_each_format_prints_the_mapping_and_keeps_it_with_the_model(
    state: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    flags: tuple[str, ...],
    renamed: dict[str, str],
) -> None:
    assert run("train", "--data", str(DATA / name), *flags) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert summary["labels"] == renamed
    assert f"{len(renamed)} labels normalized" in err
    for label, raw in renamed.items():
        assert f"{raw!r}" in err
        assert f"-> {label}" in err
    model = pickle.loads(Path(summary["artifact"]).read_bytes())
    assert isinstance(model, TrainedModel)
    assert model.labels == renamed
    active = json.loads((state / "active.json").read_text())
    assert active["label_column"] == (flags[1] if flags else None)
    # eval of the model the service would load (active.json: same file, same format)
    assert run("eval", "--data", str(DATA / name), *flags, "--json") == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["model_version"] == summary["model_version"]
    assert report["accuracy"] >= 90.0
