"""``hfasgi serve`` as a real child process, for the tests that need one (TLS, replicas, the CLI's own logs).

``serve_process(env, log, "--log-level", "debug")`` starts ``python -m hfasgi.cli serve`` on a free port
with ``env`` (see :func:`environment`), its output in ``log``; it waits until the server answers (by
default: ``/health`` answers at all; pass ``ready`` for another test, such as a TLS handshake) and
stops it (terminated, killed if need be) when the block ends. :func:`start` and
:meth:`ServeProcess.wait_ready` do the two halves, to start several at once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hfasgi.settings import ENVIRONMENT
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0

__all__ = ["ServeProcess", "environment", "serve_process", "start"]


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without any hfasgi setting or HF offline switch, plus ``settings``."""
    drop = {*ENVIRONMENT.values(), "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "SSL_CERT_FILE", "SSL_CERT_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("HFASGI_")}
    env.update({"HFASGI_USAGE_DB": "off"}, **settings, PYTHONUNBUFFERED="1")  # metering: only where a test asks
    return env


@dataclass
class ServeProcess:
    """One running ``hfasgi serve``."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything the process wrote so far (stdout and stderr)."""
        return self.log.read_text(errors="replace")

    def answers(self) -> bool:
        """Whether ``GET /health`` gets any HTTP answer."""
        try:
            httpx.get(f"{self.url}/health", timeout=2.0)
        except httpx.TransportError:
            return False
        return True

    def wait_ready(self, ready: Callable[[ServeProcess], bool] | None = None) -> None:
        """Poll ``ready`` (default :meth:`answers`) until true; fail with the output if the process dies or stalls."""
        check = ready or ServeProcess.answers
        deadline = time.monotonic() + START_TIMEOUT
        while not check(self):
            code = self.process.poll()
            if code is not None:
                pytest.fail(f"`hfasgi serve` exited with {code} during start-up:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"`hfasgi serve` was not ready within {START_TIMEOUT:g} s:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the process (kill it after 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start(env: dict[str, str], log: Path, *args: str, scheme: str = "http") -> ServeProcess:
    """Start ``python -m hfasgi.cli serve --port <free> *args`` without waiting for it."""
    port = free_port()
    command = [sys.executable, "-m", "hfasgi.cli", "serve", "--port", str(port), *args]
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return ServeProcess(f"{scheme}://127.0.0.1:{port}", port, process, log)


@contextlib.contextmanager
def serve_process(
    env: dict[str, str],
    log: Path,
    *args: str,
    scheme: str = "http",
    ready: Callable[[ServeProcess], bool] | None = None,
) -> Iterator[ServeProcess]:
    """A started and ready ``hfasgi serve``, stopped when the block ends."""
    served = start(env, log, *args, scheme=scheme)
    try:
        served.wait_ready(ready)
        yield served
    finally:
        served.stop()
