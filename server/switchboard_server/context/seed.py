"""The built-in knowledge base that describes Switchboard itself."""

from __future__ import annotations

import json
from importlib import resources

from switchboard_server.context.values import Document

RESOURCE = "default_knowledge.jsonl"


def default_documents() -> list[Document]:
    """Read the shipped documents (a JSONL file inside this package)."""
    raw = resources.files("switchboard_server.context").joinpath(RESOURCE).read_text("utf-8")
    documents = []
    for line in raw.splitlines():
        if line.strip():
            item = json.loads(line)
            documents.append(
                Document(item["id"], item["title"], item["text"], item.get("metadata", {}))
            )
    return documents
