"""Write the OpenAPI document of the edge's REST surface from the descriptor set.

Usage: python scripts/gen_openapi.py DESCRIPTOR_SET OUT_YAML

`make proto` runs it after scripts/gen_protos.py; a test regenerates the document from
the committed descriptor set and fails when docs/openapi.yaml differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from switchboard_server.mesh.edge.openapi import openapi_document, to_yaml
from switchboard_server.mesh.settings import MeshSettings


def render(descriptor_set: Path) -> str:
    settings = MeshSettings()
    url = f"http://{settings.host}:{settings.edge_port}"
    return to_yaml(openapi_document(descriptor_set.read_bytes(), server_url=url))


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    Path(sys.argv[2]).write_text(render(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
