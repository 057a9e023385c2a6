"""``make container-smoke``: the Compose stack in real containers, end to end.

Starts a private dockerd (by PID), builds the base image (mmdebstrap | docker import),
the wheelhouse, the app, Envoy and substitute images, renders the default topology with
a classification candidate for Compose (``switchboard render``, :mod:`.rollout`), runs
it (with the substitutions of :mod:`.compose`), sends a Chat through the edge (with a
token ``switchboard token mint`` signs with the key ``switchboard token init`` made; one
without a token must be refused), checks that
Prometheus has up == 1 for every target and that the trace store has the Chat's trace
with spans from the edge, every sidecar and every app; rolls the candidate out with
``switchboard rollout ... --dir <rendered>/rollout`` under a Chat load (all on stable,
promote, rollback + shadow, ``status --prometheus``: the right variant answers, no Chat
fails, no container restarts); kills one app's process and
checks that it comes back healthy and the mesh answers again; then ``down``, stops
dockerd and removes everything, also on failure. Prints the image sizes and the time
of each step.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import yaml

from scripts.container_smoke import checks, compose, images, rollout, wheelhouse
from scripts.container_smoke.dockerd import client_env, docker_cli, dockerd
from switchboard_server.deploy.variants import COMPARATOR, ROLLOUT_MOUNT
from switchboard_server.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "switchboard-smoke"
CRASHED = "classification"  # the app whose process is killed


class Steps:
    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []
        self.checks_passed = 0
        self.start = time.monotonic()

    @contextmanager
    def __call__(self, name: str, *, check: bool = False) -> Iterator[None]:
        print(f"== {name}", flush=True)
        start = time.monotonic()
        try:
            yield
            self.checks_passed += check
        finally:
            self.times.append((name, time.monotonic() - start))
            print(f"   {name}: {self.times[-1][1]:.1f} s", flush=True)

    def table(self) -> str:
        total = time.monotonic() - self.start
        rows = [f"  {name:<56} {seconds:7.1f} s" for name, seconds in self.times]
        return "\n".join([*rows, f"  {'total (wall; some steps overlap)':<56} {total:7.1f} s"])


def scrape_targets(prometheus_yml: Path) -> int:
    config = yaml.safe_load(prometheus_yml.read_text())
    return sum(
        len(static["targets"])
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
    )


def run(args: argparse.Namespace, work: Path, steps: Steps) -> None:
    with ExitStack() as stack:
        if args.engine:
            env = client_env(Path(args.engine))
        else:
            with steps("start dockerd"):
                env = stack.enter_context(dockerd(work / "docker"))
        docker = [docker_cli(), "--host", env["DOCKER_HOST"]]
        if not args.skip_images:
            _build_images(env, work / "wheelhouse", steps)
        sizes = images.sizes(env, (images.BASE, images.APP, images.ENVOY, images.SUBSTITUTES))
        for tag, size in sizes.items():
            print(f"   image {tag}: {size / 1e6:.0f} MB", flush=True)

        token = _edge_token(work / "auth")
        _mesh_certs(work / "certs")
        rendered, cli_env = rollout.render(work)
        print(f"rendered the default topology + a {rollout.SERVICE} {rollout.CANDIDATE}")
        print(f"   ({rollout.CANDIDATE_ENV}) for Compose into {rendered}", flush=True)
        bad = rollout.unreadable(rendered / "rollout")
        if bad:
            raise checks.CheckFailed(f"the rollout directory is not readable by uid 10001: {bad}")
        own = {"auth": work / "auth", "certs": work / "certs"}
        smoke = compose.derive(rendered / "compose.yaml", free_port, own)
        smoke.changes.append(rollout.scrape_every(rendered / "prometheus/prometheus.yml", "2s"))
        compose_file = compose.write(smoke, work / "compose.smoke.yaml")
        print("substituted in the smoke test's Compose file:")
        for change in smoke.changes:
            print(f"   - {change}")
        dc = ["docker-compose", "-p", PROJECT, "-f", str(compose_file)]
        stack.callback(_down, dc, env, steps)
        _exercise(smoke, dc, [*docker], env, steps, token, rendered, cli_env)


def _mesh_certs(certs: Path) -> None:
    """The mesh CA and a certificate per identity, as a user makes them for Compose."""
    switchboard = [sys.executable, "-m", "switchboard_client.cli"]
    subprocess.run([*switchboard, "certs", "init", "--out", str(certs)], check=True)


def _edge_token(auth: Path) -> str:
    """What a user does: a key pair and JWKS for the edge, then a token, by the CLI."""
    switchboard = [sys.executable, "-m", "switchboard_client.cli"]
    subprocess.run([*switchboard, "token", "init", "--out", str(auth)], check=True)
    key = auth / "dev-signing-key.pem"
    minted = subprocess.run(
        [*switchboard, "token", "mint", "--subject", "smoke", "--key", str(key)],
        check=True,
        capture_output=True,
        text=True,
    )
    return minted.stdout.strip()


def _build_images(env: dict[str, str], wheels: Path, steps: Steps) -> None:
    """The host's wheelhouse while mmdebstrap runs, the substitutes while the
    Switchboard images build (network-bound next to CPU-bound)."""

    def host_wheels() -> None:
        with steps("wheelhouse: host pip wheel of requirements.lock"):
            wheelhouse.build_host(ROOT / "requirements.lock", wheels)

    def substitutes() -> None:
        with steps("substitute redis + prometheus image (apt)"):
            images.build_substitutes(env)

    with ThreadPoolExecutor(max_workers=1) as side:
        wheels_done = side.submit(host_wheels)
        with steps("base image: mmdebstrap | docker import"):
            images.build_base(env)
        wheels_done.result()
        substitutes_done = side.submit(substitutes)
        count = wheelhouse.add_for(ROOT / "requirements.lock", wheels, images.python_version(env))
        print(f"   wheelhouse: {count} wheels", flush=True)
        with images.served(wheels) as url:
            with steps("envoy image (docker/envoy.Dockerfile)"):
                images.build(env, ROOT / "docker/envoy.Dockerfile", images.ENVOY, ROOT, url)
            with steps("app image (docker/app.Dockerfile)"):
                images.build(env, ROOT / "docker/app.Dockerfile", images.APP, ROOT, url)
        substitutes_done.result()


def _exercise(
    smoke: compose.Smoke,
    dc: list[str],
    docker: list[str],
    env: dict[str, str],
    steps: Steps,
    token: str,
    rendered: Path,
    cli_env: dict[str, str],
) -> None:
    with steps("docker-compose up -d (healthchecks gate the order)", check=True):
        subprocess.run([*dc, "up", "-d", "--no-build", *smoke.services()], env=env, check=True)
    edge = f"127.0.0.1:{smoke.published[('edge', 8080)]}"
    prometheus = f"http://127.0.0.1:{smoke.published[('prometheus', 9090)]}"
    traces = f"http://127.0.0.1:{smoke.published[('jaeger', compose.JAEGER_UI_PORT)]}"
    apps = smoke.apps()
    with steps("every app healthy; a Chat through the edge", check=True):
        for service in apps:
            container = _container(dc, env, service)
            checks.poll(
                f"{service} healthy",
                lambda c=container: checks.restarted_healthy(docker, c, -1),  # type: ignore[misc]
                180,
            )
        trace_id, reply = checks.poll(
            "Chat through the edge", lambda: checks.chat(edge, "s1", token), 120
        )
        print(f"   reply: {reply!r} (trace {trace_id})", flush=True)
        refused = checks.chat_refused_without_token(edge)
        print(f"   without a token: UNAUTHENTICATED ({refused})", flush=True)
        app = next(name for name, service in apps.items() if service == CRASHED)
        ingress, health = _sidecar_ports(rendered, app.removesuffix("-app"))
        refused = checks.plaintext_refused_at_ingress(
            docker, _container(dc, env, app), ingress, health
        )
        print(f"   plaintext to the sidecar's mTLS ingress :{ingress}: refused ({refused})")
    with steps("Prometheus: up == 1 for every target", check=True):
        expected = scrape_targets(rendered / "prometheus/prometheus.yml")
        up = checks.poll("up == 1", lambda: checks.prometheus_up(prometheus, expected), 120, 3)
        print(f"   {len(up)} targets up: {', '.join(sorted(up))}", flush=True)
    with steps("the Chat's trace: edge, every sidecar, every app", check=True):
        wanted = {"envoy-edge"} | {f"envoy-{s}" for s in apps.values()}
        wanted |= {f"switchboard-{s}" for s in apps.values()}
        seen = checks.poll("trace", lambda: checks.trace_services(traces, trace_id, wanted), 60, 2)
        print(f"   spans from {', '.join(sorted(seen))}", flush=True)
    _rollout(smoke, dc, docker, env, steps, token, rendered, cli_env)
    crashed = next(name for name, service in apps.items() if service == CRASHED)
    with steps(f"kill -9 the {CRASHED} app; back healthy; Chat again", check=True):
        container = _container(dc, env, crashed)
        before = checks.crash(docker, container)
        checks.poll(
            f"{crashed} restarted and healthy",
            lambda: checks.restarted_healthy(docker, container, before),
            180,
        )
        checks.poll("Chat after the restart", lambda: checks.chat(edge, "s2", token), 60)


ROLLOUT_CHATS = 10  # Chats per checked phase of the rollout


def _rollout(
    smoke: compose.Smoke,
    dc: list[str],
    docker: list[str],
    env: dict[str, str],
    steps: Steps,
    token: str,
    rendered: Path,
    cli_env: dict[str, str],
) -> None:
    """The candidate in containers: all on stable, ``rollout promote`` and ``rollout
    shadow`` through the bind-mounted directory under a Chat load (no restart, no failed
    Chat), and ``rollout status --prometheus`` with both variants."""
    edge = f"127.0.0.1:{smoke.published[('edge', 8080)]}"
    prometheus = f"http://127.0.0.1:{smoke.published[('prometheus', 9090)]}"
    policy_dir = rendered / "rollout"
    scrape = rendered / "prometheus/prometheus.yml"
    app_scrapes = rollout.scrape_targets(scrape, "switchboard-app", rollout.SERVICE)
    comparator_scrape = rollout.scrape_targets(scrape, "switchboard-rollout")[0]
    comparator = _container(dc, env, COMPARATOR)
    caller = _container(dc, env, rollout.mounting(smoke.compose, ROLLOUT_MOUNT)[0])
    service, candidate, n = rollout.SERVICE, rollout.CANDIDATE, ROLLOUT_CHATS

    def read() -> rollout.Counts:
        return rollout.read_counts(docker, comparator, app_scrapes, comparator_scrape)

    def change(*args: str) -> None:
        said = rollout.switchboard(cli_env, "rollout", *args, "--dir", str(policy_dir))
        print(f"   $ switchboard rollout {' '.join(args)} --dir …: {said.strip()}", flush=True)
        bad = rollout.unreadable(policy_dir)
        if bad:
            raise checks.CheckFailed(f"not readable by the sidecars' uid: {bad}")

    def weight_in_sidecar(expected: str) -> None:
        uid, weight = rollout.read_as_sidecar(docker, caller, ROLLOUT_MOUNT)
        if weight != expected:
            raise checks.CheckFailed(f"the caller's sidecar reads weight {weight}, not {expected}")
        print(f"   the caller's sidecar (uid {uid}) reads the candidate's weight {weight}")

    every = _containers(dc, env)
    started = rollout.starts(docker, every)
    with steps("rollout: all on stable; the candidate answers no Chat", check=True):
        before = read()
        rollout.chats(edge, token, "stable", n)
        moved = rollout.wait_moved(
            "stable's verdicts", read, before, lambda d: d.of("stable", "live") >= n
        )
        if moved.of(candidate, "live") or moved.of(candidate, "shadow"):
            raise checks.CheckFailed(f"all on stable, yet the candidate answered: {moved.text()}")
        print(f"   {n} Chats: {moved.text()}", flush=True)
        weight_in_sidecar("0")
    with steps("rollout promote --dir under a Chat load: candidate answers", check=True):
        before = read()
        with rollout.ChatLoad(edge, token, "promote") as load:
            change("promote", service, candidate)
            rollout.wait_moved(
                "the candidate answering", read, before, lambda d: d.of(candidate, "live") > 0, 30
            )
        print(f"   {load.check()}", flush=True)
        weight_in_sidecar("10000")
        before = read()
        rollout.chats(edge, token, "promoted", n)
        moved = rollout.wait_moved(
            "the candidate's verdicts", read, before, lambda d: d.of(candidate, "live") >= n
        )
        if moved.of("stable", "live"):
            raise checks.CheckFailed(f"promoted, yet stable answered: {moved.text()}")
        print(f"   {n} Chats: {moved.text()}", flush=True)
    with steps("rollout rollback + shadow candidate=100 under Chat load", check=True):
        before = read()
        with rollout.ChatLoad(edge, token, "shadow") as load:
            change("rollback", service)
            change("shadow", service, f"{candidate}=100")
            rollout.wait_moved(
                "the candidate shadowed", read, before, lambda d: d.of(candidate, "shadow") > 0, 30
            )
        print(f"   {load.check()}", flush=True)
        before = read()
        rollout.chats(edge, token, "shadowed", n)
        moved = rollout.wait_moved(
            "shadow answers compared",
            read,
            before,
            lambda d: d.compared >= n and d.of("stable", "live") >= n,
        )
        if moved.of(candidate, "live"):
            raise checks.CheckFailed(f"shadowing, yet the candidate answered live: {moved.text()}")
        print(f"   {n} Chats: {moved.text()}", flush=True)
        restarted = sorted(k for k, v in rollout.starts(docker, every).items() if started[k] != v)
        if restarted:
            raise checks.CheckFailed(f"restarted during the rollout: {restarted}")
        print(f"   none of the {len(every)} containers restarted (start times, restart counts)")
    with steps("rollout status --prometheus --dir: both variants", check=True):
        status = [
            "rollout",
            "status",
            service,
            "--prometheus",
            prometheus,
            "--dir",
            str(policy_dir),
        ]
        figures = checks.poll(
            "both variants in Prometheus",
            lambda: rollout.both_variants(
                rollout.switchboard(cli_env, *status, "--json", ok=(0, 1))
            ),
            60,
            2,
        )
        print(f"   {figures}")
        print(rollout.switchboard(cli_env, *status, ok=(0, 1)), flush=True)


def _sidecar_ports(rendered: Path, sidecar: str) -> tuple[int, int]:
    """The rendered sidecar's ingress port and its scrape (health route) port."""
    config = yaml.safe_load((rendered / "envoy" / f"{sidecar}.sidecar.yaml").read_text())
    ports = {
        listener["name"]: listener["address"]["socket_address"]["port_value"]
        for listener in config["static_resources"]["listeners"]
    }
    return int(ports["ingress"]), int(ports["scrape"])


def _containers(dc: list[str], env: dict[str, str]) -> list[str]:
    run = subprocess.run([*dc, "ps", "-q"], env=env, check=True, capture_output=True, text=True)
    return run.stdout.split()


def _container(dc: list[str], env: dict[str, str], service: str) -> str:
    run = subprocess.run(
        [*dc, "ps", "-q", service], env=env, check=True, capture_output=True, text=True
    )
    container = run.stdout.strip()
    if not container:
        raise checks.CheckFailed(f"no container for {service}")
    return container


def _down(dc: list[str], env: dict[str, str], steps: Steps) -> None:
    if sys.exc_info()[0] is not None:
        subprocess.run([*dc, "ps"], env=env, check=False)
        subprocess.run([*dc, "logs", "--tail", "20"], env=env, check=False)
    with steps("docker-compose down -v"):
        subprocess.run(
            [*dc, "down", "--volumes", "--remove-orphans", "--timeout", "10"], env=env, check=False
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.container_smoke", description=__doc__)
    parser.add_argument("--engine", help="Use this running dockerd socket (development aid).")
    parser.add_argument(
        "--skip-images", action="store_true", help="Use the images already built (with --engine)."
    )
    args = parser.parse_args(argv)
    for tool in ("dockerd", "docker-compose", "mmdebstrap"):
        if shutil.which(tool) is None:
            print(f"error: {tool} missing: run scripts/install-container-deps.sh", file=sys.stderr)
            return 2
    steps = Steps()
    work = Path(tempfile.mkdtemp(prefix="switchboard-smoke-"))
    ok = False
    try:
        run(args, work, steps)
        ok = True
    except (checks.CheckFailed, subprocess.CalledProcessError, RuntimeError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        print("\ncontainer smoke test, time per step:")
        print(steps.table())
    # The plain closing line CI reads: each check of _exercise is one.
    print(f"container-smoke: {steps.checks_passed} passed, {0 if ok else 1} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
