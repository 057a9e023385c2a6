"""The smoke test's model rollout: the default topology with a classification
``candidate`` (the same image and training data, ``SWITCHBOARD_CLASSIFICATION_TFIDF_C=2``:
it trains as fast as stable and is told apart by its ``variant`` label), rendered with
``switchboard render --target compose`` as a user does, and changed at run time with
``switchboard rollout ... --dir <rendered>/rollout`` on the host (the directory the
callers' sidecars bind-mount).

What the checks read: each classification app's
``switchboard_classification_variant_verdicts_total{variant,traffic}`` and the
comparator's ``switchboard_rollout_shadow_compared_total{variant}``, exactly and at
once, by one ``docker exec`` in the comparator's container that fetches the scrape
ports Prometheus scrapes (``<sidecar>:15020/metrics`` is the app's ``/metrics``).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from prometheus_client.parser import text_string_to_metric_families

from scripts.container_smoke import checks
from switchboard_server.mesh.topology import default_topology

SERVICE = "classification"
CANDIDATE = "candidate"
CANDIDATE_ENV = {"SWITCHBOARD_CLASSIFICATION_TFIDF_C": "2"}
VERDICTS = "switchboard_classification_variant_verdicts"
COMPARED = "switchboard_rollout_shadow_compared"
# The runtime key the callers' split reads for the candidate's share (of 10,000).
CANDIDATE_WEIGHT_KEY = "envoy/rollout/classification/weight/classification-candidate"


def candidate_topology() -> dict[str, Any]:
    """The default topology with a classification candidate, split on Classify and
    ClassifyStream, mirrored on Classify (docs/rollouts.md's example)."""
    raw: dict[str, Any] = yaml.safe_load(default_topology().read_text())
    raw["services"][SERVICE]["variants"] = {CANDIDATE: {"replicas": 1, "env": dict(CANDIDATE_ENV)}}
    raw["services"][SERVICE]["rollout"] = {
        "split_methods": ["Classify", "ClassifyStream"],
        "shadow_methods": ["Classify"],
    }
    return raw


def cli_env(topology_file: Path) -> dict[str, str]:
    """The environment of the host's ``switchboard`` commands: every setting at its
    default (as ``make render``) but the topology file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["SWITCHBOARD_MESH_TOPOLOGY_FILE"] = str(topology_file)
    return env


def switchboard(env: dict[str, str], *args: str, ok: tuple[int, ...] = (0,)) -> str:
    """``switchboard ARGS`` on the host; its stdout. An exit not in ``ok`` raises."""
    run = subprocess.run(
        [sys.executable, "-m", "switchboard_client.cli", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    if run.returncode not in ok:
        raise checks.CheckFailed(
            f"switchboard {' '.join(args)}: exit {run.returncode}: {run.stderr.strip()}"
        )
    return run.stdout


def render(work: Path) -> tuple[Path, dict[str, str]]:
    """Write the candidate topology and render it for Compose into ``work/rendered``;
    returns that directory and the environment the ``rollout`` commands need."""
    topology_file = work / "topology.yaml"
    topology_file.write_text(yaml.safe_dump(candidate_topology(), sort_keys=False))
    env = cli_env(topology_file)
    out = work / "rendered"
    switchboard(env, "render", "--target", "compose", str(out))
    return out, env


def unreadable(root: Path) -> list[str]:
    """Paths under ``root`` (itself included) that another user (the sidecars' uid
    10001) could not read: a file without o+r, a directory without o+rx."""
    bad = []
    for path in [root, *sorted(root.rglob("*"))]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        need = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
        if mode & need != need:
            bad.append(f"{path.relative_to(root.parent)} {stat.filemode(mode)}")
    return bad


def sums(text: str, name: str, by: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """The samples of counter ``name`` in a Prometheus text exposition, summed by the
    labels ``by`` (``name`` without ``_total``)."""
    out: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name != f"{name}_total":
                continue
            key = tuple(sample.labels.get(label, "") for label in by)
            out[key] = out.get(key, 0.0) + sample.value
    return out


@dataclass(frozen=True)
class Counts:
    """Verdicts per (variant, traffic) from both apps; shadow answers compared."""

    verdicts: dict[tuple[str, str], float]
    compared: float

    def of(self, variant: str, traffic: str) -> float:
        return self.verdicts.get((variant, traffic), 0.0)

    def minus(self, before: Counts) -> Counts:
        keys = set(self.verdicts) | set(before.verdicts)
        moved = {k: self.verdicts.get(k, 0.0) - before.verdicts.get(k, 0.0) for k in keys}
        return Counts(moved, self.compared - before.compared)

    def text(self) -> str:
        parts = [f"{v}/{t} {n:g}" for (v, t), n in sorted(self.verdicts.items()) if n]
        return f"verdicts {', '.join(parts) or 'none'}; shadow compared {self.compared:g}"


_FETCH = (
    "import json, sys, urllib.request\n"
    "print(json.dumps({u: urllib.request.urlopen(u, timeout=5).read().decode()"
    " for u in sys.argv[1:]}))"
)


def read_counts(
    docker: list[str], comparator: str, app_scrapes: list[str], comparator_scrape: str
) -> Counts:
    """Every classification app's verdicts and the comparator's compared count, from
    inside the comparator's container (on the Compose network)."""
    urls = [f"http://{host}/metrics" for host in [*app_scrapes, comparator_scrape]]
    run = subprocess.run(
        [*docker, "exec", comparator, "python", "-c", _FETCH, *urls],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if run.returncode != 0:
        raise checks.CheckFailed(f"reading the metrics: {run.stderr.strip()[-300:]}")
    pages: dict[str, str] = json.loads(run.stdout)
    verdicts: dict[tuple[str, str], float] = {}
    for url in urls[:-1]:
        for key, value in sums(pages[url], VERDICTS, ("variant", "traffic")).items():
            verdicts[(key[0], key[1])] = verdicts.get((key[0], key[1]), 0.0) + value
    compared = sums(pages[urls[-1]], COMPARED, ("variant",)).get((CANDIDATE,), 0.0)
    return Counts(verdicts, compared)


def read_as_sidecar(docker: list[str], container: str, mount: str) -> tuple[str, str]:
    """``(uid, value)``: the candidate's weight key read inside a caller's sidecar
    container, as its own user, through the bind mount's relative ``current`` link."""
    key = f"{mount}/current/{CANDIDATE_WEIGHT_KEY}"
    run = subprocess.run(
        [*docker, "exec", container, "sh", "-c", 'id -u && cat "$1"', "sh", key],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if run.returncode != 0:
        raise checks.CheckFailed(f"reading {mount} in {container}: {run.stderr.strip()}")
    uid, value = run.stdout.split()
    return uid, value


@dataclass
class ChatLoad:
    """Chats through the edge one after another in a thread, each a new session, until
    :meth:`stop`; counts the answered and keeps every failure."""

    edge: str
    token: str
    prefix: str
    answered: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ChatLoad:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                checks.chat(
                    self.edge, f"{self.prefix}-{self.answered + len(self.failures)}", self.token
                )
                self.answered += 1
            except (grpc.RpcError, checks.CheckFailed) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def check(self) -> str:
        if self.failures:
            raise checks.CheckFailed(
                f"{len(self.failures)} of {self.answered + len(self.failures)} Chats failed "
                f"during the change: {self.failures[:3]}"
            )
        return f"{self.answered} Chats during the change, 0 failed"


def chats(edge: str, token: str, prefix: str, count: int) -> None:
    for i in range(count):
        checks.chat(edge, f"{prefix}-{i}", token)


def wait_moved(what: str, read: Any, before: Counts, moved: Any, timeout_s: float = 60.0) -> Counts:
    """Poll ``read()`` until ``moved(delta)`` holds for its delta from ``before``."""

    def attempt() -> Counts | None:
        delta: Counts = read().minus(before)
        return delta if moved(delta) else None

    return checks.poll(what, attempt, timeout_s, 0.5)


def scrape_targets(prometheus_yml: Path, job: str, service: str | None = None) -> list[str]:
    """The ``host:port`` targets of a scrape job (only those labelled ``service``)."""
    config = yaml.safe_load(prometheus_yml.read_text())
    return [
        target
        for scrape in config["scrape_configs"]
        if scrape["job_name"] == job
        for static in scrape.get("static_configs", [])
        if service is None or static.get("labels", {}).get("service") == service
        for target in static["targets"]
    ]


def mounting(compose: dict[str, Any], mount: str) -> list[str]:
    """The Compose services that bind-mount something at ``mount`` (the callers'
    sidecars, for the rollout directory)."""
    return sorted(
        name
        for name, spec in compose["services"].items()
        if any(str(v).split(":")[1:2] == [mount] for v in spec.get("volumes", []))
    )


def scrape_every(prometheus_yml: Path, interval: str) -> str:
    """Set the global scrape interval of the smoke run's rendering (the checks read the
    figures soon after the traffic); the change as a line for the list."""
    config = yaml.safe_load(prometheus_yml.read_text())
    before = config["global"]["scrape_interval"]
    config["global"]["scrape_interval"] = interval
    config["global"]["scrape_timeout"] = interval
    prometheus_yml.write_text(yaml.safe_dump(config, sort_keys=False))
    return f"prometheus: scrape_interval {before} -> {interval} (the rollout checks read it soon)"


def both_variants(status_json: str) -> str | None:
    """What ``rollout status --json`` says of both variants once each has live calls
    (the promote phase's, for the candidate) and the candidate shadow answers compared."""
    doc = json.loads(status_json)
    variants = doc["variants"]
    stable, candidate = variants.get("stable", {}), variants.get(CANDIDATE, {})
    if not (stable.get("calls") and candidate.get("calls") and candidate.get("compared")):
        raise checks.CheckFailed(f"not yet both variants: {json.dumps(variants)[:300]}")
    return (
        f"stable {stable['calls']} calls; {CANDIDATE} {candidate['calls']} calls, "
        f"{candidate['compared']} shadow answers compared, {candidate['agreed_intent']} agreed"
    )


def starts(docker: list[str], containers: list[str]) -> dict[str, str]:
    """Each container's name -> its start time and restart count: equal before and
    after a change means nothing was restarted."""
    fields = "{{.Name}} {{.State.StartedAt}} {{.RestartCount}}"
    run = subprocess.run(
        [*docker, "inspect", "--format", fields, *containers],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(line.split(" ", 1) for line in run.stdout.splitlines() if line.strip())
