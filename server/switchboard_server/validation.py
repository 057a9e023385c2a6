"""Request validation that collects every bad field before failing.

Used by servicers while translating a request into domain values::

    v = Violations()
    text = v.text("text", request.text, max_bytes=settings.core.max_text_bytes)
    top_k = v.int_range("options.top_k", request.options.top_k, 0, 20)
    v.raise_if_any()          # InvalidArgument naming every bad field
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from switchboard_server.errors import FieldViolation, InvalidArgument

SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
INTENT_PATH_PATTERN = re.compile(r"^[a-z0-9_-]{1,64}(/[a-z0-9_-]{1,64}){0,2}$")
MAX_METADATA_KEYS = 16
MAX_METADATA_VALUE_BYTES = 512
MAX_ECHOED_CHARS = 32


def echoed(value: str) -> str:
    """A caller's string as an error shows it: quoted, escaped to ASCII, and cut to
    ``MAX_ECHOED_CHARS`` (``'abc...'``) so an answer never repeats a huge input."""
    quoted = ascii(value[:MAX_ECHOED_CHARS])
    if len(value) <= MAX_ECHOED_CHARS:
        return quoted
    return f"{quoted[:-1]}...{quoted[-1]}"


class Violations:
    """Collects field violations; ``raise_if_any`` raises one InvalidArgument for all."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def __bool__(self) -> bool:
        return bool(self._items)

    @property
    def items(self) -> tuple[FieldViolation, ...]:
        return tuple(self._items)

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgument(self._items)

    def text(self, field: str, value: str, *, max_bytes: int, required: bool = True) -> str:
        """A user text: not blank (when required), at most ``max_bytes`` UTF-8 bytes."""
        if not value.strip():
            if required:
                self.add(field, "must not be empty or whitespace")
            return ""
        size = len(value.encode("utf-8"))
        if size > max_bytes:
            self.add(field, f"is {size} bytes; the limit is {max_bytes}")
        if "\x00" in value:
            self.add(field, "must not contain NUL characters")
        return value.strip()

    def session_id(self, field: str, value: str, *, required: bool = True) -> str:
        """A session id: 1-128 of ``[A-Za-z0-9._:-]``; empty allowed when not required."""
        if not value:
            if required:
                self.add(field, "is required")
            return ""
        if not SESSION_ID_PATTERN.fullmatch(value):
            self.add(field, "must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        return value

    def identifier(self, field: str, value: str) -> str:
        """A caller-chosen id (document id, request id): same rules as a session id."""
        return self.session_id(field, value, required=True)

    def int_range(self, field: str, value: int, low: int, high: int) -> int:
        """An integer limit in [low, high]."""
        if value < low or value > high:
            self.add(field, f"must be between {low} and {high}, got {value}")
            return max(low, min(high, value))
        return value

    def float_range(self, field: str, value: float, low: float, high: float) -> float:
        """A float in [low, high] (NaN rejected)."""
        if not (low <= value <= high):
            self.add(field, f"must be between {low:g} and {high:g}, got {value:g}")
            return max(low, min(high, value)) if value == value else low
        return value

    def count(self, field: str, size: int, low: int, high: int) -> None:
        """A repeated field must hold between low and high items."""
        if size < low:
            self.add(field, f"must hold at least {low} item(s)")
        elif size > high:
            self.add(field, f"holds {size} items; the limit is {high}")

    def enum(self, field: str, value: int, allowed: Collection[int]) -> int:
        """An enum value: not the zero ``*_UNSPECIFIED``, and one the server knows."""
        if value == 0:
            self.add(field, "must be set (the *_UNSPECIFIED zero value is not accepted)")
        elif value not in allowed:
            self.add(field, f"unknown enum value {value}")
        return value

    def intent_path(self, field: str, value: str) -> str:
        """An intent label ``l1[/l2[/l3]]`` in lowercase, or ``oos``."""
        if not INTENT_PATH_PATTERN.fullmatch(value):
            self.add(field, "must be 'l1', 'l1/l2' or 'l1/l2/l3' of [a-z0-9_-], or 'oos'")
        return value

    def metadata(self, field: str, value: Mapping[str, str]) -> dict[str, str]:
        """Free-form string metadata: at most 16 keys, short values."""
        if len(value) > MAX_METADATA_KEYS:
            self.add(field, f"holds {len(value)} keys; the limit is {MAX_METADATA_KEYS}")
        for key, item in value.items():
            path = f"{field}[{echoed(key)}]"
            if not key or len(key) > 64:
                self.add(path, "keys must be 1-64 characters")
            if len(item.encode("utf-8")) > MAX_METADATA_VALUE_BYTES:
                self.add(path, f"value exceeds {MAX_METADATA_VALUE_BYTES} bytes")
        return dict(value)
