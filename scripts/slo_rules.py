"""Write docker/prometheus/rules/slo.yml from the SWITCHBOARD_OBS_SLO_* settings.

Usage: python scripts/slo_rules.py [--check] [--output PATH]
With the environment's settings (defaults when unset): e.g.
``SWITCHBOARD_OBS_SLO_CHAT_LATENCY_S=0.5 python scripts/slo_rules.py --output my-slo.yml``.
--check fails when the file differs from a fresh render.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from switchboard_server.observability.settings import ObservabilitySettings
from switchboard_server.observability.slo import render_slo_rules

RULES = Path(__file__).resolve().parent.parent / "docker" / "prometheus" / "rules" / "slo.yml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Fail when the file is stale.")
    parser.add_argument("--output", type=Path, default=RULES, help=f"Where (default {RULES}).")
    args = parser.parse_args()
    text = render_slo_rules(ObservabilitySettings())
    if args.check:
        if not args.output.exists() or args.output.read_text() != text:
            raise SystemExit(f"{args.output} is stale: run scripts/slo_rules.py")
        return
    args.output.write_text(text)


if __name__ == "__main__":
    main()
