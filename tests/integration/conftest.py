"""Integration tier: the gateway in front of a real ``transformers serve`` running a tiny random model built offline.

Everything here is marked ``integration``. Without torch/transformers the tier is skipped (install the
``[integration]`` extra), except on CI (``CI=true``) where that is an error. The server runs as a subprocess in
its own process group, with ``HF_HUB_OFFLINE=1`` and a private ``HF_HOME`` set in *its* environment only: real
clients in this process refuse even 127.0.0.1 when ``HF_HUB_OFFLINE`` is set.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import free_port, serve

HERE = Path(__file__).parent
BUILDER = HERE / "make_tiny_model.py"
REQUIRED_MODULES = ("torch", "transformers", "fastapi")
"""What ``transformers serve`` needs: the ``[integration]`` extra (``transformers[serving]`` brings fastapi)."""
STARTUP_TIMEOUT = 90.0
"""Seconds allowed for ``transformers serve`` to answer ``GET /health`` with 200."""
STOP_GRACE = 10.0
"""Seconds between SIGTERM and SIGKILL at teardown."""
SERVER_TOKEN = "hf_server_side_secret"
"""The gateway's own upstream token."""

_MISSING = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark this directory's tests ``integration``; skip them (or, on CI, fail) when the extra is missing."""
    mine = [item for item in items if item.path.is_relative_to(HERE)]
    if not mine:
        return
    reason = f"{', '.join(_MISSING)} not importable: install the [integration] extra (pip install -e '.[integration]')"
    if _MISSING and os.environ.get("CI") == "true":
        raise pytest.UsageError(f"integration tier cannot run on CI: {reason}")
    for item in mine:
        item.add_marker(pytest.mark.integration)
        if _MISSING:
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass(frozen=True, slots=True)
class TransformersServer:
    """A running ``transformers serve`` pinned to one model."""

    url: str
    """Base URL, ``http://127.0.0.1:PORT`` (the OpenAI routes are under ``/v1``)."""
    model: str
    """The exact model id to send: the pinned directory path (anything else gets 400)."""
    log: Path
    """The server's combined stdout/stderr."""
    pid: int
    """Process id (and process group id) of the server."""


def _cache_key() -> str:
    """Hash of the builder's source and the versions that shape what it writes."""
    digest = hashlib.sha256(BUILDER.read_bytes())
    for dist in ("torch", "transformers", "tokenizers", "safetensors"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            digest.update(f"{dist}=={importlib.metadata.version(dist)}".encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_model_dir(pytestconfig: pytest.Config) -> Path:
    """The tiny Llama model directory, built once and cached under ``.cache/hfasgi-tests/`` by builder hash.

    The build runs in a subprocess, so torch is never imported into the test process.
    """
    cache = pytestconfig.rootpath / ".cache" / "hfasgi-tests"
    target = cache / f"tiny-llama-{_cache_key()}"
    if (target / "model.safetensors").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="tiny-llama-build-", dir=cache))
    try:
        done = subprocess.run(
            [sys.executable, str(BUILDER), str(staging / "model")],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        if done.returncode != 0:
            pytest.fail(f"building the tiny model failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        try:
            os.rename(staging / "model", target)  # atomic; a concurrent builder may have won the race
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for stale in cache.glob("tiny-llama-*"):  # builds of older builder versions
        if stale != target:
            shutil.rmtree(stale, ignore_errors=True)
    return target


_ORPHAN_GUARD = """
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: kept across execv
if os.getppid() != int(sys.argv[1]):
    sys.exit("parent already gone")
os.execv(sys.argv[2], sys.argv[2:])
"""
"""Linux launcher: have the kernel SIGKILL the server if pytest dies without tearing it down, then exec it."""


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""Probes go straight to 127.0.0.1 whatever ``*_proxy`` says."""


def _healthy(url: str) -> bool:
    """Whether ``GET url/health`` answers 200 right now."""
    try:
        with _NO_PROXY.open(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()
        return False
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it after a grace period, and reap the leader."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE)
    with contextlib.suppress(ProcessLookupError):  # the leader may be gone while a child lingers
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def _run_server(model_dir: Path, workdir: Path, attempt: int) -> Iterator[TransformersServer | None]:
    """Run ``transformers serve`` until the block ends; yield ``None`` if its port was taken meanwhile."""
    executable = Path(sys.executable).with_name("transformers")
    if not executable.is_file():
        pytest.fail(f"{executable} not found: install the [integration] extra")
    hf_home = workdir / "hf-home"
    (hf_home / "hub").mkdir(parents=True, exist_ok=True)  # without it GET /v1/models answers 500
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / f"transformers-serve-{attempt}.log"
    command = [str(executable), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--device", "cpu", "--log-level", "info"]
    if sys.platform == "linux":  # die with this process even if it is killed before teardown
        command = [sys.executable, "-c", _ORPHAN_GUARD, str(os.getpid()), *command]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    atexit.register(_stop, process)  # if the session dies before teardown
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _healthy(url):
            if process.poll() is not None:
                if "address already in use" in log.read_text(errors="replace").lower():
                    yield None
                    return
                pytest.fail(f"transformers serve exited with {process.returncode} during startup:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve not healthy after {STARTUP_TIMEOUT:.0f}s:\n{_tail(log)}")
            time.sleep(0.1)
        yield TransformersServer(url=url, model=str(model_dir), log=log, pid=process.pid)
    finally:
        _stop(process)
        atexit.unregister(_stop)


@pytest.fixture(scope="session")
def transformers_server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransformersServer]:
    """A ``transformers serve`` subprocess pinned to the tiny model, healthy, stopped at session end."""
    if any(c in str(tiny_model_dir) for c in "@:"):
        pytest.fail(f"transformers serve cannot take a model path with '@' or ':': {tiny_model_dir}")
    workdir = tmp_path_factory.mktemp("transformers-serve")
    for attempt in range(3):  # free_port() can race with another process grabbing the port
        with _run_server(tiny_model_dir, workdir, attempt) as server:
            if server is not None:
                yield server
                return
    pytest.fail("transformers serve could not bind a free port in 3 attempts")


@pytest.fixture(scope="session")
def gateway(transformers_server: TransformersServer) -> Iterator[str]:
    """The reference gateway (``hfasgi.app.create_app``) in front of the server; yields its base URL."""
    from hfasgi.app import create_app
    from hfasgi.settings import Settings

    settings = Settings(
        upstream_url=transformers_server.url,
        upstream_kind="openai",
        default_model=transformers_server.model,
        hf_token=SERVER_TOKEN,
        no_auth=True,
    )
    with serve(create_app(settings)) as url:
        yield url
