"""A local HTTP server speaking the OpenAI chat-completions protocol, scripted by tests.

``POST /v1/chat/completions`` answers ``script.status`` with ``script.body`` after
``script.delay`` seconds (in a thread of its own, so a slow answer blocks nobody), and
records every request body and its headers::

    with fake_llm() as (base_url, script):
        script.body = completion("hello")
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from switchboard_server.orchestration.llm import LLMComposer, LLMConfig


@dataclass
class Script:
    """What the fake API answers next, and what it received."""

    status: int = 200
    body: Any = None
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


def completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


@contextlib.contextmanager
def fake_llm() -> Iterator[tuple[str, Script]]:
    """The base URL (``http://127.0.0.1:<port>/v1``) and the script of a running fake."""
    script = Script()
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/v1/chat/completions":
                self.send_error(404)
                return
            length = int(self.headers["Content-Length"])
            script.requests.append(json.loads(self.rfile.read(length)))
            script.headers.append(dict(self.headers))
            if script.delay:
                release.wait(script.delay)
            payload = json.dumps(script.body).encode()
            try:
                self.send_response(script.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up waiting
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", script
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def composer(base_url: str, timeout_s: float = 2.0) -> LLMComposer:
    return LLMComposer(
        LLMConfig(
            base_url=base_url,
            model="test-model",
            api_key="sk-test",
            timeout_s=timeout_s,
            max_tokens=64,
            temperature=0.0,
        )
    )
