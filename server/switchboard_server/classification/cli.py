"""``switchboard train`` / ``switchboard eval``: the argument parsers.

The implementation (``commands.py``) imports the training stack (scikit-learn, numpy),
so it is loaded only when one of these commands runs: every other ``switchboard``
command starts without paying for it, and a client-only install (no ``server`` extra)
still lists these commands and says what to install when one runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from switchboard_client.cli import Subparsers, requires_extra

BACKENDS = ("tfidf", "embeddings", "hybrid")
FORMATS = ("jsonl", "csv", "rasa")
DATA_HELP = "JSON Lines, CSV or Rasa NLU YAML (by extension; --format overrides)"


def run_train(args: argparse.Namespace) -> int:
    with requires_extra("server"):
        from switchboard_server.classification import commands

    return commands.run_train(args)


def run_eval(args: argparse.Namespace) -> int:
    with requires_extra("server"):
        from switchboard_server.classification import commands

    return commands.run_eval(args)


def run_discover(args: argparse.Namespace) -> int:
    with requires_extra("server"):
        from switchboard_server.classification import commands

    return commands.run_discover(args)


def register(subparsers: Subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="Train the classification model and write the artifact the service loads."
    )
    train.add_argument("--data", type=Path, required=True, help=f"Training data: {DATA_HELP}.")
    train.add_argument("--validation", type=Path, help="Held-out data (default: a split).")
    train.add_argument("--backend", choices=BACKENDS, help="Backend (default: the setting).")
    _format_flags(train)
    train.set_defaults(func=run_train)
    ev = subparsers.add_parser("eval", help="Evaluate the classification model on test data.")
    ev.add_argument("--data", type=Path, required=True, help=f"Test data: {DATA_HELP}.")
    ev.add_argument("--train", type=Path, help="Train a fresh model on this file (not saved).")
    ev.add_argument("--validation", type=Path, help="Held-out data for --train.")
    ev.add_argument("--oos", type=Path, help="Out-of-scope texts (same format).")
    ev.add_argument("--backend", choices=BACKENDS, help="Backend (default: the setting).")
    _format_flags(ev)
    ev.add_argument("--json", action="store_true", help="Print one JSON object.")
    ev.set_defaults(func=run_eval)
    _register_discover(subparsers)


def _format_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=FORMATS, help="Format of every data file (default: by extension)."
    )
    parser.add_argument(
        "--text-column", metavar="NAME", help="CSV column / JSON key of the text (default: text)."
    )
    parser.add_argument(
        "--label-column",
        metavar="NAME",
        help="CSV column / JSON key of the label (default: label for CSV, intent for JSON).",
    )


def _register_discover(subparsers: Subparsers) -> None:
    discover = subparsers.add_parser(
        "discover",
        help="Cluster the kept out-of-scope messages into candidate intents.",
        description=(
            "Reads the messages the classification service kept (with "
            "SWITCHBOARD_CLASSIFICATION_DISCOVERY_ENABLED=true) from its data directory, "
            "prints the clusters and writes them to a file for `switchboard examples add`."
        ),
    )
    discover.add_argument(
        "--features",
        choices=("auto", "tfidf", "embeddings"),
        default="auto",
        help="Text vectors (auto: embeddings when that extra is installed, else tfidf).",
    )
    discover.add_argument(
        "--method",
        choices=("agglomerative", "hdbscan"),
        default="agglomerative",
        help="Clustering (default: agglomerative, average linkage, cosine distance).",
    )
    discover.add_argument(
        "--distance-threshold",
        type=float,
        metavar="D",
        help="Cosine distance at which agglomerative clusters stop merging "
        "(default: 0.8 embeddings, 0.9 tfidf).",
    )
    discover.add_argument(
        "--min-size", type=int, default=3, metavar="N", help="Smallest cluster shown (default 3)."
    )
    discover.add_argument(
        "--examples", type=int, default=5, metavar="N", help="Representative texts per cluster."
    )
    discover.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="Where to write the clusters (default: <data dir>/classification/discovered.json).",
    )
    discover.add_argument("--json", action="store_true", help="Print the file's JSON instead.")
    discover.set_defaults(func=run_discover)
