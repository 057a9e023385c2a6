"""``switchboard examples add``: which texts it sends and under which request ids."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from switchboard_client.commands.examples import UsageError, request_ids, texts_of

DISCOVERED = {
    "clusters": [
        {"cluster": 1, "texts": ["file my taxes", "tax return help"]},
        {"cluster": 2, "texts": ["groom my dog", "tax return help"]},
    ]
}


def test_texts_come_from_the_chosen_clusters_once_each(tmp_path: Path) -> None:
    path = tmp_path / "discovered.json"
    path.write_text(json.dumps(DISCOVERED))
    assert texts_of(path, [2]) == ["groom my dog", "tax return help"]
    assert texts_of(path, [1, 2]) == ["file my taxes", "tax return help", "groom my dog"]
    with pytest.raises(UsageError, match=r"holds 2 clusters; choose with --cluster N"):
        texts_of(path, None)
    with pytest.raises(UsageError, match=r"has no cluster 7 \(it has \[1, 2\]\)"):
        texts_of(path, [7])


def test_a_text_file_gives_one_text_a_line(tmp_path: Path) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("file my taxes\n\n  tax return help  \n")
    assert texts_of(path, None) == ["file my taxes", "tax return help"]
    with pytest.raises(UsageError, match="not a switchboard discover file"):
        texts_of(path, [1])


def test_request_ids_are_uuids_that_repeat_for_the_same_command_only(tmp_path: Path) -> None:
    path = tmp_path / "discovered.json"
    path.write_text(json.dumps(DISCOVERED))
    first = request_ids(path, [1], "finance/tax", 3)
    assert len(set(first)) == 3
    assert all(uuid.UUID(key).version == 5 for key in first)
    assert request_ids(path, [1], "finance/tax", 3) == first
    assert request_ids(path, [1], "finance/taxes", 3) != first
    assert request_ids(path, [2], "finance/tax", 3) != first
    path.write_text(json.dumps({"clusters": DISCOVERED["clusters"][:1]}))
    assert request_ids(path, [1], "finance/tax", 3) != first
