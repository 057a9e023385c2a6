"""The Violations collector names every bad field and keeps good values."""

from __future__ import annotations

import pytest

from switchboard_server.errors import InvalidArgument
from switchboard_server.validation import Violations


def test_collects_all_violations_in_order() -> None:
    v = Violations()
    v.text("text", "  ", max_bytes=10)
    v.session_id("session_id", "has space")
    v.int_range("max_results", 99, 0, 50)
    v.enum("memory_types[0]", 0, {1, 2, 3})
    v.enum("memory_types[1]", 7, {1, 2, 3})
    with pytest.raises(InvalidArgument) as err:
        v.raise_if_any()
    assert [x.field for x in err.value.violations] == [
        "text",
        "session_id",
        "max_results",
        "memory_types[0]",
        "memory_types[1]",
    ]
    assert "unknown enum value 7" in err.value.message


def test_text_limit_counts_utf8_bytes() -> None:
    v = Violations()
    assert v.text("text", "é" * 5, max_bytes=10) == "é" * 5
    assert not v
    v.text("text", "é" * 6, max_bytes=10)
    assert v.items[0].description == "is 12 bytes; the limit is 10"


def test_good_values_pass_through() -> None:
    v = Violations()
    assert v.text("text", "  hello ", max_bytes=100) == "hello"
    assert v.session_id("session_id", "user-1:abc.2_x") == "user-1:abc.2_x"
    assert v.session_id("session_id", "", required=False) == ""
    assert v.intent_path("intent", "alarm/set") == "alarm/set"
    assert v.float_range("threshold", 0.5, 0.0, 1.0) == 0.5
    v.raise_if_any()


@pytest.mark.parametrize("value", ["Alarm/Set", "a/b/c/d", "", "a//b", "x" * 65])
def test_bad_intent_paths(value: str) -> None:
    v = Violations()
    v.intent_path("intent", value)
    assert [x.field for x in v.items] == ["intent"]


def test_nan_threshold_is_rejected() -> None:
    v = Violations()
    v.float_range("threshold", float("nan"), 0.0, 1.0)
    assert v.items[0].field == "threshold"


def test_metadata_limits() -> None:
    v = Violations()
    v.metadata("metadata", {f"k{i}": "v" for i in range(17)})
    v.metadata("metadata", {"k": "x" * 600})
    assert [x.field for x in v.items] == ["metadata", "metadata['k']"]
