"""Rewrite the settings table in docs/operations.md from the Settings classes.

Usage: python scripts/settings_doc.py [--check]
The table sits between the SETTINGS markers; --check fails when it is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

from switchboard_server.config import settings_table

PAGE = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
BEGIN, END = "<!-- SETTINGS:BEGIN -->", "<!-- SETTINGS:END -->"


def render() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, default, description in settings_table():
        lines.append(f"| `{name}` | `{default}` | {description} |")
    return "\n".join(lines)


def main() -> None:
    text = PAGE.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"docs/operations.md: the {BEGIN} and {END} markers are missing")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    updated = f"{head}{BEGIN}\n{render()}\n{END}{tail}"
    if "--check" in sys.argv:
        if updated != text:
            raise SystemExit(
                "docs/operations.md settings table is stale: run scripts/settings_doc.py"
            )
        return
    PAGE.write_text(updated)


if __name__ == "__main__":
    main()
