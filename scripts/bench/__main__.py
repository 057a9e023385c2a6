"""``make bench``: run every benchmark module and print their figures.

Each module in ``scripts/bench/`` (other than this one) exposes ``run() -> dict``
returning the figures it measured; ``python -m scripts.bench NAME ...`` runs a subset.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    here = Path(__file__).parent
    names = argv or sorted(
        m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_")
    )
    results = {}
    for name in names:
        module = importlib.import_module(f"scripts.bench.{name}")
        print(f"== {name}", flush=True)
        results[name] = module.run()
        print(json.dumps(results[name], indent=2), flush=True)
    out = Path(".switchboard/bench.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"figures written to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
