"""A stand-in for ``transformers serve``: a tiny OpenAI-ish HTTP server with switches for misbehaving.

Usage: ``python tests/local/fake_child.py --port P [switches]``. Standard library only.

* ``GET /health`` → 200 (503 with ``--never-ready``); ``GET /env`` → a few of its environment variables.
* ``POST /v1/chat/completions`` and ``POST /v1/completions`` → a fixed OpenAI-shaped answer naming the
  model it was sent and its own pid.
* ``--exit-code N``: write two lines and exit with ``N`` before listening.
* ``--require FILE``: exit with 3 before listening unless ``FILE`` exists (a child that fails to restart).
* ``--ignore-sigterm``: only SIGKILL stops it.
* ``--grandchild FILE``: start a sleeping grandchild (same process group) and write its pid to ``FILE``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ENV_SHOWN = ("HF_HUB_OFFLINE", "HF_HOME", "HF_TOKEN", "HFASGI_API_KEYS", "FAKE_MARK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--exit-code", type=int)
    parser.add_argument("--require", type=Path)
    parser.add_argument("--never-ready", action="store_true")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--grandchild", type=Path)
    args = parser.parse_args()
    print(f"fake child {os.getpid()} starting on port {args.port}", flush=True)
    if args.exit_code is not None:
        print("fake child: something went wrong", file=sys.stderr, flush=True)
        sys.exit(args.exit_code)
    if args.require is not None and not args.require.exists():
        print(f"fake child: {args.require} is missing", flush=True)
        sys.exit(3)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.grandchild is not None:
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        args.grandchild.write_text(str(sleeper.pid))
    Handler.never_ready = args.never_ready
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"fake child listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


class Handler(BaseHTTPRequestHandler):
    never_ready = False

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(503 if self.never_ready else 200, {"status": "loading" if self.never_ready else "ok"})
        elif self.path == "/env":
            self._json(200, {name: os.environ.get(name) for name in ENV_SHOWN})
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": []})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        model = body.get("model")
        text = f"hello from {os.getpid()}"
        if self.path == "/v1/chat/completions":
            choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
            choice["message"] = {"role": "assistant", "content": text}
            self._json(200, _answer("chat.completion", model, choice))
        elif self.path == "/v1/completions":
            self._json(200, _answer("text_completion", model, {"index": 0, "finish_reason": "stop", "text": text}))
        else:
            self._json(404, {"detail": "Not Found"})

    def _json(self, status: int, doc: Any) -> None:
        payload = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        print(f"fake child: {format % args}", flush=True)


def _answer(kind: str, model: Any, choice: dict[str, Any]) -> dict[str, Any]:
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    doc = {"id": "fake", "object": kind, "created": int(time.time()), "model": model, "choices": [choice]}
    return {**doc, "usage": usage}


if __name__ == "__main__":
    main()
