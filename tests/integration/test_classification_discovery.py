"""Discovery end to end on a real server: out-of-scope answers are kept (hashed sessions),
``switchboard discover`` clusters them, ``switchboard examples add`` teaches a cluster
through AddExamples, and the new intent is classified afterwards. Also: a model trained
on a CSV with unruly labels answers with the dataset's own label in ``display_name``."""

from __future__ import annotations

import argparse
import io
import json
import sqlite3
from pathlib import Path

import pytest

from switchboard.classification.v1 import classification_service_pb2 as pb
from switchboard_client.cli import build_parser
from switchboard_client.commands.examples import add as examples_add
from tests.support.classification import classification_server, small_dataset

DATASETS = Path(__file__).parents[1] / "data" / "datasets"
OOS = pb.ClassifyOptions(confidence_threshold=0.999)  # every answer out of scope
TAX = [
    "help me file my tax return",
    "when is the tax return deadline",
    "file my tax return before the deadline",
    "i need help with my tax return",
    "how do i file my tax return online",
]
GROOMING = [
    "book a dog grooming appointment",
    "my dog needs grooming",
    "schedule dog grooming for next week",
    "dog grooming appointment tomorrow",
    "find dog grooming near me",
]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


async def test_discovered_cluster_is_added_through_add_examples_and_then_classified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(data_dir))
    async with classification_server(
        data_dir, train_path=small_dataset(tmp_path), discovery_enabled=True, retrain_enabled=False
    ) as running:
        stub = running.stub
        for i, text in enumerate(TAX + GROOMING):
            answer = (
                await stub.Classify(
                    pb.ClassifyRequest(text=text, session_id=f"user-{i % 3}", options=OOS)
                )
            ).classification
            assert answer.out_of_scope
        in_scope = (
            await stub.Classify(pb.ClassifyRequest(text="wake me up at 7 am"))
        ).classification
        assert not in_scope.out_of_scope
        store = data_dir / "classification" / "discovery.sqlite3"
        rows = sqlite3.connect(store).execute("SELECT text, session_hash FROM messages").fetchall()
        assert sorted(t for t, _ in rows) == sorted(TAX + GROOMING)  # in-scope text not kept
        assert {len(h) for _, h in rows} == {32}
        assert not any(b"user-" in p.read_bytes() for p in store.parent.glob("discovery*"))
        metrics = running.server.runtime.metrics
        kept = "switchboard_classification_discovery_kept_total"
        assert metrics.get_sample_value(kept, {"outcome": "ok"}) == 10
        assert metrics.get_sample_value("switchboard_classification_discovery_messages") == 10

        out = tmp_path / "discovered.json"
        discover = parse("discover", "--features", "tfidf", "--out", str(out))
        assert discover.func(discover) == 0
        table = capsys.readouterr().out
        record = json.loads(out.read_text())
        clusters = {frozenset(c["texts"]): c for c in record["clusters"]}
        assert frozenset(TAX) in clusters
        assert frozenset(GROOMING) in clusters
        tax = clusters[frozenset(TAX)]
        assert tax["sessions"] == 3
        assert tax["suggested_label"] in table

        args = parse(
            "examples", "add", str(out), "--cluster", str(tax["cluster"]),
            "--label", "finance/tax_return", "--target", f"127.0.0.1:{running.port}",
        )  # fmt: skip
        stdout, stderr = io.StringIO(), io.StringIO()
        assert await examples_add(args, stdout, stderr) == 0, stderr.getvalue()
        assert "added 5 examples as finance/tax_return" in stdout.getvalue()
        assert "new intents: finance/tax_return" in stdout.getvalue()

        after = (await stub.Classify(pb.ClassifyRequest(text=TAX[0]))).classification
        assert after.intent == "finance/tax_return"
        assert not after.out_of_scope
        intents = await stub.ListIntents(pb.ListIntentsRequest())
        added = {i.path: i.runtime_example_count for i in intents.intents}
        assert added["finance/tax_return"] == 5

        # the same command again: same request ids, so nothing is stored twice
        again = io.StringIO()
        assert await examples_add(args, again, io.StringIO()) == 0
        assert "run-time examples 5;" in again.getvalue()
        info = await stub.GetModelInfo(pb.GetModelInfoRequest())
        assert info.runtime_example_count == 5


async def test_examples_add_needs_a_cluster_when_the_file_has_several(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(
        json.dumps({"clusters": [{"cluster": 1, "texts": ["a"]}, {"cluster": 2, "texts": ["b"]}]})
    )
    err = io.StringIO()
    args = parse("examples", "add", str(path), "--label", "x/y", "--target", "127.0.0.1:1")
    assert await examples_add(args, io.StringIO(), err) == 2
    assert "holds 2 clusters; choose with --cluster N (one of [1, 2])" in err.getvalue()


async def test_a_model_trained_on_unruly_csv_labels_answers_with_the_original_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(data_dir))
    csv = str(DATASETS / "banking.csv")
    train = parse("train", "--data", csv, "--label-column", "category")
    assert train.func(train) == 0
    capsys.readouterr()
    async with classification_server(data_dir) as running:  # active.json: CSV, its column
        answer = (
            await running.stub.Classify(pb.ClassifyRequest(text="my refund still has not shown up"))
        ).classification
        assert answer.intent == "refund_not_showing_up"
        assert answer.display_name == "Refund_not_showing_up"
        intents = await running.stub.ListIntents(pb.ListIntentsRequest())
        names = {i.path: i.display_name for i in intents.intents}
        assert names == {
            "card_arrival": "Card Arrival",
            "exchange_rate": "exchange rate",
            "refund_not_showing_up": "Refund_not_showing_up",
            "reverted_card_payment": "reverted_card_payment?",
        }


async def test_a_broken_discovery_store_does_not_fail_classify(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with classification_server(
        data_dir, train_path=small_dataset(tmp_path), discovery_enabled=True
    ) as running:
        store = data_dir / "classification" / "discovery.sqlite3"
        with sqlite3.connect(store) as db:
            db.execute("DROP TABLE messages")
        answer = (
            await running.stub.Classify(pb.ClassifyRequest(text=TAX[0], options=OOS))
        ).classification
        assert answer.out_of_scope
        metrics = running.server.runtime.metrics
        kept = "switchboard_classification_discovery_kept_total"
        assert metrics.get_sample_value(kept, {"outcome": "error"}) == 1
        assert metrics.get_sample_value(kept, {"outcome": "ok"}) in (None, 0.0)
