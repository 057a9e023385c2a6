"""What ``switchboard certs init | rotate | show`` do (parsers in :mod:`..cli`).

``init`` creates the mesh CA (or uses yours: SWITCHBOARD_MESH_CA_CERT_FILE and
SWITCHBOARD_MESH_CA_KEY_FILE) and a certificate for every identity that has none or
whose certificate is due; ``rotate`` issues fresh keys and certificates for all of them,
which running sidecars pick up through their SDS file watch; ``show`` lists them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from switchboard_server.config import load_settings_or_report
from switchboard_server.deploy.mesh_tls import open_for_containers
from switchboard_server.mesh.commands import EXIT_CONFIG, _plan
from switchboard_server.mesh.runner import certs_dir
from switchboard_server.mesh.security.certs import CertError, CertInfo
from switchboard_server.mesh.security.mtls import (
    MeshTls,
    all_sds_documents,
    cert_store,
    identities,
    write_sds,
)
from switchboard_server.mesh.topology import TopologyError


def certs_command(args: argparse.Namespace) -> int:
    settings = load_settings_or_report("switchboard")
    if settings is None:
        return EXIT_CONFIG
    try:
        plan = _plan(settings, [])
    except TopologyError as exc:
        print(f"switchboard certs: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # --out: certificates for Compose (mounted per identity; SDS files are rendered)
    root = Path(args.out) if getattr(args, "out", None) else certs_dir(settings)
    store = cert_store(settings.mesh, root)
    names = identities(plan.topology)
    try:
        if args.action == "init":
            done = store.ensure(names)
        elif args.action == "rotate":
            done = store.rotate(names)
        else:
            return _show(store.show(names), as_json=args.json)
    except CertError as exc:
        print(f"switchboard certs {args.action}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    mesh = settings.mesh
    if getattr(args, "out", None):
        open_for_containers(root, names)
    else:
        write_sds(all_sds_documents(plan, MeshTls(root, mesh.trust_domain, mesh.namespace)))
    what = f"issued {' '.join(done)}" if done else "up to date, nothing issued"
    print(f"switchboard certs {args.action}: {what} (in {root})")
    return 0


def _show(rows: list[CertInfo], *, as_json: bool) -> int:
    if as_json:
        doc = [
            {
                "name": r.name,
                "spiffe_id": r.spiffe_id,
                "serial": r.serial,
                "not_before": r.not_before.isoformat(),
                "not_after": r.not_after.isoformat(),
                "issuer": r.issuer,
            }
            for r in rows
        ]
        print(json.dumps(doc, indent=2))
        return 0
    for r in rows:
        until = r.not_after.strftime("%Y-%m-%d %H:%M UTC")
        print(f"{r.name:<15} {r.serial:<40} until {until}  {r.spiffe_id or r.issuer}")
    return 0
